//! Pulling a cohort from a PACS over DIMSE: C-FIND at study level for each accession number,
//! patient ID or study UID of a list, then each study found is retrieved one of two ways:
//! - C-MOVE ([`move_study`]), with the gateway as the move destination: the PACS opens its own
//!   association to the gateway like any sender (it must know the gateway's AE title, address
//!   and port, and be on the allow-list), and the instances are spooled and routed as usual;
//! - C-GET ([`get_study`]): the PACS sends the instances back on the association the pull
//!   opened, and they go straight into the spool (no route back to the gateway needed, which is
//!   why sites behind NAT or with a PACS that cannot add destinations use it).
use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

use crate::dimse;
use crate::scu::{Destination, SendError};
use crate::spool::Spool;

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const C_FIND_RQ: u16 = 0x0020;
const C_MOVE_RQ: u16 = 0x0021;
const C_GET_RQ: u16 = 0x0010;
/// Pending status of a C-FIND, C-MOVE or C-GET response.
const PENDING: u16 = 0xFF00;

/// What a row of the cohort list names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CohortKey {
    AccessionNumber(String),
    PatientId(String),
    StudyInstanceUid(String),
}

impl CohortKey {
    /// The key named by a CSV column header (`accession`, `patient_id`, `study_uid`).
    pub fn from_column(column: &str, value: &str) -> Option<CohortKey> {
        let v = value.trim().to_string();
        match column.trim().to_ascii_lowercase().as_str() {
            "accession" | "accession_number" | "accessionnumber" => {
                Some(CohortKey::AccessionNumber(v))
            }
            "patient_id" | "patientid" => Some(CohortKey::PatientId(v)),
            "study_uid" | "study_instance_uid" | "studyinstanceuid" => {
                Some(CohortKey::StudyInstanceUid(v))
            }
            _ => None,
        }
    }

    fn matching(&self) -> (Tag, VR, &str) {
        match self {
            CohortKey::AccessionNumber(v) => (tags::ACCESSION_NUMBER, VR::SH, v),
            CohortKey::PatientId(v) => (tags::PATIENT_ID, VR::LO, v),
            CohortKey::StudyInstanceUid(v) => (tags::STUDY_INSTANCE_UID, VR::UI, v),
        }
    }
}

/// The outcome of moving one study.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    pub completed: u32,
    pub failed: u32,
    pub warnings: u32,
    /// The final status of the C-MOVE.
    pub status: u16,
}

/// An open query/retrieve association with the PACS.
struct Qr {
    assoc: crate::scu::Assoc,
    source: String,
    next_message: u16,
}

impl Qr {
    /// Opens an association proposing one query/retrieve context (implicit VR LE, ID 1).
    fn open(source: &Destination, calling_ae: &str, class: &str) -> Result<Qr, SendError> {
        Qr::open_with(source, calling_ae, &[(class, IMPLICIT_LE)], &[])
    }

    /// Opens an association proposing `contexts` (the first the query/retrieve one, which must
    /// be accepted) and asking the storage SCP role for `scp_role_for`.
    fn open_with(
        source: &Destination,
        calling_ae: &str,
        contexts: &[(&str, &str)],
        scp_role_for: &[&str],
    ) -> Result<Qr, SendError> {
        let (assoc, accepted) = crate::scu::associate(
            source,
            calling_ae,
            contexts,
            scp_role_for,
            Duration::from_secs(600),
        )?;
        if accepted.first() != Some(&Some(1)) {
            return Err(SendError::Unavailable {
                destination: source.to_string(),
                message: format!("{} not accepted", contexts[0].0),
            });
        }
        Ok(Qr {
            assoc,
            source: source.to_string(),
            next_message: 1,
        })
    }

    fn unavailable(&self, message: String) -> SendError {
        SendError::Unavailable {
            destination: self.source.clone(),
            message,
        }
    }

    /// Sends a request (command + identifier) on context 1.
    fn request(
        &mut self,
        field: u16,
        class: &str,
        extra: &[(Tag, VR, PrimitiveValue)],
        identifier: &InMemDicomObject,
    ) -> Result<(), SendError> {
        let message_id = self.next_message;
        self.next_message += 1;
        let command = dimse::request(field, class, message_id, extra);
        let mut data = Vec::new();
        identifier
            .write_dataset_with_ts(&mut data, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .map_err(|e| self.unavailable(format!("cannot encode the query: {e}")))?;
        self.send(1, PDataValueType::Command, command)?;
        self.send(1, PDataValueType::Data, data)
    }

    /// Sends one whole message part (a command or a data set) on context `pc`.
    fn send(
        &mut self,
        pc: u8,
        value_type: PDataValueType,
        bytes: Vec<u8>,
    ) -> Result<(), SendError> {
        let pdu = Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type,
                is_last: true,
                data: bytes,
            }],
        };
        let sent = self.assoc.send(&pdu);
        sent.map_err(|e| self.unavailable(format!("sending failed: {e}")))
    }

    /// The PDVs of the next P-DATA the peer sends (anything else ends the exchange).
    fn receive_pdvs(&mut self) -> Result<Vec<PDataValue>, SendError> {
        let pdu = self.assoc.receive();
        match pdu.map_err(|e| self.unavailable(format!("no answer: {e}")))? {
            Pdu::PData { data } => Ok(data),
            other => Err(self.unavailable(format!("unexpected answer {other:?}"))),
        }
    }

    /// Reads one response: its command set, and its data set when one follows.
    fn response(&mut self) -> Result<(InMemDicomObject, Option<InMemDicomObject>), SendError> {
        let (mut command, mut data) = (Vec::new(), Vec::new());
        let mut parsed: Option<InMemDicomObject> = None;
        loop {
            for pdv in self.receive_pdvs()? {
                match pdv.value_type {
                    PDataValueType::Command => {
                        command.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            let c = read(&command).map_err(|m| self.unavailable(m))?;
                            let follows = c
                                .get(tags::COMMAND_DATA_SET_TYPE)
                                .and_then(|e| e.to_int::<u16>().ok())
                                .is_some_and(|t| t != 0x0101);
                            if !follows {
                                return Ok((c, None));
                            }
                            parsed = Some(c);
                        }
                    }
                    PDataValueType::Data => {
                        data.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            let c = parsed.take().ok_or_else(|| {
                                self.unavailable("a data set before its command".into())
                            })?;
                            let d = read(&data).map_err(|m| self.unavailable(m))?;
                            return Ok((c, Some(d)));
                        }
                    }
                }
            }
        }
    }

    fn close(self) {
        self.assoc.release();
    }
}

fn read(bytes: &[u8]) -> Result<InMemDicomObject, String> {
    InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable response: {e}"))
}

fn int(obj: &InMemDicomObject, tag: Tag) -> u32 {
    obj.get(tag)
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(0)
}

fn status(obj: &InMemDicomObject) -> u16 {
    int(obj, tags::STATUS) as u16
}

fn study_identifier(key: (Tag, VR, &str)) -> InMemDicomObject {
    let mut id = InMemDicomObject::new_empty();
    id.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("STUDY"),
    ));
    id.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(""),
    ));
    let (tag, vr, value) = key;
    id.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    id
}

/// A study the PACS found: its UID and, when the PACS says (SOP Classes in Study, an optional
/// return key), the storage classes of its instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundStudy {
    pub uid: String,
    pub sop_classes: Vec<String>,
}

fn strings(obj: &InMemDicomObject, tag: Tag) -> Vec<String> {
    obj.get(tag)
        .and_then(|e| e.to_multi_str().ok())
        .map(|v| {
            v.iter()
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs one C-FIND (Study Root) and returns every matching identifier.
fn find(
    source: &Destination,
    calling_ae: &str,
    query: &InMemDicomObject,
) -> Result<Vec<InMemDicomObject>, SendError> {
    let mut qr = Qr::open(source, calling_ae, STUDY_ROOT_FIND)?;
    qr.request(C_FIND_RQ, STUDY_ROOT_FIND, &[], query)?;
    let mut matches = Vec::new();
    loop {
        let (command, identifier) = qr.response()?;
        match status(&command) {
            // Pending: one match.
            PENDING | 0xFF01 => matches.extend(identifier),
            dimse::SUCCESS => break,
            s => {
                qr.close();
                return Err(SendError::Refused {
                    destination: source.to_string(),
                    status: s,
                });
            }
        }
    }
    qr.close();
    Ok(matches)
}

/// The studies the PACS has for `key` (C-FIND, Study Root, study level).
pub fn find_studies(
    source: &Destination,
    calling_ae: &str,
    key: &CohortKey,
) -> Result<Vec<FoundStudy>, SendError> {
    let mut query = study_identifier(key.matching());
    query.put(DataElement::new(
        tags::SOP_CLASSES_IN_STUDY,
        VR::UI,
        PrimitiveValue::Empty,
    ));
    let mut studies: Vec<FoundStudy> = Vec::new();
    for identifier in find(source, calling_ae, &query)? {
        let Some(uid) = strings(&identifier, tags::STUDY_INSTANCE_UID)
            .into_iter()
            .next()
        else {
            continue;
        };
        if !studies.iter().any(|s| s.uid == uid) {
            let sop_classes = strings(&identifier, tags::SOP_CLASSES_IN_STUDY);
            studies.push(FoundStudy { uid, sop_classes });
        }
    }
    Ok(studies)
}

/// The storage classes of a study's instances, asked instance by instance (for a PACS that
/// does not return SOP Classes in Study).
fn study_classes(
    source: &Destination,
    calling_ae: &str,
    study_uid: &str,
) -> Result<Vec<String>, SendError> {
    let mut query = study_identifier((tags::STUDY_INSTANCE_UID, VR::UI, study_uid));
    query.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from("IMAGE"),
    ));
    for tag in [
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
        tags::SOP_CLASS_UID,
    ] {
        query.put(DataElement::new(tag, VR::UI, PrimitiveValue::Empty));
    }
    let mut classes: Vec<String> = Vec::new();
    for identifier in find(source, calling_ae, &query)? {
        for class in strings(&identifier, tags::SOP_CLASS_UID) {
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
    }
    Ok(classes)
}

/// Moves one study to `move_destination` (C-MOVE, Study Root); returns the sub-operation counts.
pub fn move_study(
    source: &Destination,
    calling_ae: &str,
    study_uid: &str,
    move_destination: &str,
) -> Result<Moved, SendError> {
    let mut qr = Qr::open(source, calling_ae, STUDY_ROOT_MOVE)?;
    let identifier = study_identifier((tags::STUDY_INSTANCE_UID, VR::UI, study_uid));
    let dest = PrimitiveValue::from(move_destination);
    qr.request(
        C_MOVE_RQ,
        STUDY_ROOT_MOVE,
        &[(tags::MOVE_DESTINATION, VR::AE, dest)],
        &identifier,
    )?;
    loop {
        let (command, _) = qr.response()?;
        let s = status(&command);
        if s == PENDING {
            continue;
        }
        qr.close();
        return Ok(Moved {
            completed: int(&command, tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
            failed: int(&command, tags::NUMBER_OF_FAILED_SUBOPERATIONS),
            warnings: int(&command, tags::NUMBER_OF_WARNING_SUBOPERATIONS),
            status: s,
        });
    }
}

/// Transfer syntaxes offered for each storage class in a C-GET, so that the PACS can send every
/// instance as it holds it (no transcoding on its side): the dicom-rs registry reads them all.
const RETRIEVE_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2.1",    // explicit VR little endian
    "1.2.840.10008.1.2",      // implicit VR little endian
    "1.2.840.10008.1.2.4.50", // JPEG baseline
    "1.2.840.10008.1.2.4.51", // JPEG extended
    "1.2.840.10008.1.2.4.70", // JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80", // JPEG-LS lossless
    "1.2.840.10008.1.2.4.81", // JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
    "1.2.840.10008.1.2.5",    // RLE lossless
    "1.2.840.10008.1.2.1.99", // deflated explicit VR little endian
];
/// Presentation context IDs are odd numbers up to 255: 128 contexts, one for the C-GET itself.
const MAX_CONTEXTS: usize = 128;

/// Retrieves one study with C-GET (Study Root): the PACS stores each instance back on this
/// association, and each is put in `spool` before its C-STORE is answered. Returns the
/// sub-operation counts of the final response.
pub fn get_study(
    source: &Destination,
    calling_ae: &str,
    study: &FoundStudy,
    spool: &Spool,
) -> Result<Moved, SendError> {
    let classes = match study.sop_classes.is_empty() {
        false => study.sop_classes.clone(),
        true => study_classes(source, calling_ae, &study.uid)?,
    };
    if 1 + classes.len() * RETRIEVE_SYNTAXES.len() > MAX_CONTEXTS {
        return Err(SendError::Unavailable {
            destination: source.to_string(),
            message: format!(
                "the study holds {} storage classes, more than one C-GET association can \
                 negotiate; pull it with C-MOVE",
                classes.len()
            ),
        });
    }
    let mut contexts = vec![(STUDY_ROOT_GET, IMPLICIT_LE)];
    for class in &classes {
        contexts.extend(RETRIEVE_SYNTAXES.iter().map(|ts| (class.as_str(), *ts)));
    }
    let roles: Vec<&str> = classes.iter().map(String::as_str).collect();
    let mut qr = Qr::open_with(source, calling_ae, &contexts, &roles)?;
    let identifier = study_identifier((tags::STUDY_INSTANCE_UID, VR::UI, &study.uid));
    qr.request(C_GET_RQ, STUDY_ROOT_GET, &[], &identifier)?;
    let outcome = qr.serve_get(spool);
    qr.close();
    outcome
}

impl Qr {
    /// Answers the C-STORE sub-operations of a C-GET until its final response.
    fn serve_get(&mut self, spool: &Spool) -> Result<Moved, SendError> {
        let mut command = Vec::new();
        let mut store = crate::scp::Exchange::default();
        // Negotiated once, at association: the storage contexts the PACS sends on.
        let contexts = self.assoc.presentation_contexts().to_vec();
        loop {
            for pdv in self.receive_pdvs()? {
                if pdv.presentation_context_id != 1 {
                    if let Some((pc, reply)) = store.take_with(pdv, &contexts, spool) {
                        self.send(pc, PDataValueType::Command, reply)?;
                    }
                    continue;
                }
                command.extend_from_slice(&pdv.data);
                if !pdv.is_last || pdv.value_type != PDataValueType::Command {
                    continue;
                }
                let response =
                    read(&std::mem::take(&mut command)).map_err(|m| self.unavailable(m))?;
                let s = status(&response);
                if s != PENDING && s != 0xFF01 {
                    return Ok(Moved {
                        completed: int(&response, tags::NUMBER_OF_COMPLETED_SUBOPERATIONS),
                        failed: int(&response, tags::NUMBER_OF_FAILED_SUBOPERATIONS),
                        warnings: int(&response, tags::NUMBER_OF_WARNING_SUBOPERATIONS),
                        status: s,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cohort_columns_name_their_keys() {
        assert_eq!(
            CohortKey::from_column("Accession", " A1 "),
            Some(CohortKey::AccessionNumber("A1".into()))
        );
        assert_eq!(
            CohortKey::from_column("patient_id", "P"),
            Some(CohortKey::PatientId("P".into()))
        );
        assert!(CohortKey::from_column("name", "x").is_none());
    }
}
