//! What a patient needs to tell two released studies apart: the study's date, modalities and
//! description, recorded (sealed) when a release first writes an instance of the study with
//! that modality. Only the patient's own disclosure record shows them; the ledger does not
//! carry them, so they do not change what the chain proves.

use sqlx::Row;

use crate::{Result, Store};

/// A released study as the patient knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StudyDetails {
    /// `YYYYMMDD` as in the images (empty when they had none).
    pub date: String,
    /// Modalities seen in releases of the study, sorted.
    pub modalities: Vec<String>,
    pub description: String,
}

impl StudyDetails {
    /// Adds one recorded row of `released_studies` whose sealed date, modality and description
    /// start at column `first`: the first non-empty date and description are kept, each
    /// modality once, sorted.
    pub(crate) fn add_recorded(
        &mut self,
        keys: &crate::StoreKeys,
        r: &sqlx::any::AnyRow,
        first: usize,
    ) -> Result<()> {
        let open = |what: &'static str, column: usize| -> Result<String> {
            keys.sealer.open(what, &r.try_get::<String, _>(column)?)
        };
        let date = open("study.date", first)?;
        let modality = open("study.modality", first + 1)?;
        let description = open("study.description", first + 2)?;
        if self.date.is_empty() {
            self.date = date;
        }
        if self.description.is_empty() {
            self.description = description;
        }
        if !modality.is_empty() && !self.modalities.contains(&modality) {
            self.modalities.push(modality);
            self.modalities.sort();
        }
        Ok(())
    }
}

fn study_ref(master: &veil_keys::Key, study_uid: &str) -> String {
    hex::encode(master.mac("veil-store/study-ref", study_uid.trim().as_bytes()))
}

impl Store {
    /// Records a study's date, modality and description for the patient's record (once per
    /// study and modality; later calls change nothing).
    pub fn record_study_details(
        &self,
        patient_ref: &str,
        study_uid: &str,
        modality: &str,
        date: &str,
        description: &str,
    ) -> Result<()> {
        let keys = self.keys()?;
        let study = study_ref(&keys.master, study_uid);
        let detail = hex::encode(keys.master.mac(
            "veil-store/study-detail-ref",
            format!("{study}\0{}", modality.trim()).as_bytes(),
        ));
        self.block_on(
            sqlx::query("INSERT INTO released_studies (detail_ref, study_ref, patient_ref, study_date_enc, modality_enc, description_enc, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (detail_ref) DO NOTHING")
                .bind(detail)
                .bind(study)
                .bind(patient_ref)
                .bind(keys.sealer.seal("study.date", date.trim()))
                .bind(keys.sealer.seal("study.modality", modality.trim()))
                .bind(keys.sealer.seal("study.description", description.trim()))
                .bind(crate::time::now_utc())
                .execute(&self.pool),
        )?;
        Ok(())
    }

    /// The recorded details of an original study (default when none were recorded).
    pub fn study_details(&self, study_uid: &str) -> Result<StudyDetails> {
        let keys = self.keys()?;
        let rows = self.block_on(
            sqlx::query("SELECT study_date_enc, modality_enc, description_enc FROM released_studies WHERE study_ref = $1 ORDER BY recorded_at")
                .bind(study_ref(&keys.master, study_uid))
                .fetch_all(&self.pool),
        )?;
        let mut d = StudyDetails::default();
        for r in &rows {
            d.add_recorded(keys, r, 0)?;
        }
        Ok(d)
    }
}
