//! Pulling a cohort from a PACS: C-FIND at study level for each accession number, patient ID or
//! study UID of a list, then C-MOVE of each study found, with the gateway as the move destination.
//! The PACS sends the instances to the gateway like any sender (it must know the gateway's AE
//! title, address and port, and be on the allow-list); they are spooled and routed as usual.

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};

use crate::dimse;
use crate::scu::{Destination, SendError};

const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const C_FIND_RQ: u16 = 0x0020;
const C_MOVE_RQ: u16 = 0x0021;

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
    assoc: dicom_ul::ClientAssociation<std::net::TcpStream>,
    source: String,
    next_message: u16,
}

impl Qr {
    fn open(source: &Destination, calling_ae: &str, class: &str) -> Result<Qr, SendError> {
        let (assoc, accepted) = crate::scu::associate(
            source,
            calling_ae,
            &[(class, IMPLICIT_LE)],
            Duration::from_secs(600),
        )?;
        if accepted != [Some(1)] {
            return Err(SendError::Unavailable {
                destination: source.to_string(),
                message: format!("{class} not accepted"),
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
        for (value_type, bytes) in [
            (PDataValueType::Command, command),
            (PDataValueType::Data, data),
        ] {
            let pdu = Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: 1,
                    value_type,
                    is_last: true,
                    data: bytes,
                }],
            };
            let sent = self.assoc.send(&pdu);
            sent.map_err(|e| self.unavailable(format!("sending failed: {e}")))?;
        }
        Ok(())
    }

    /// Reads one response: its command set, and its data set when one follows.
    fn response(&mut self) -> Result<(InMemDicomObject, Option<InMemDicomObject>), SendError> {
        let (mut command, mut data) = (Vec::new(), Vec::new());
        let mut parsed: Option<InMemDicomObject> = None;
        loop {
            let pdu = self.assoc.receive();
            let pdu = pdu.map_err(|e| self.unavailable(format!("no answer: {e}")))?;
            let Pdu::PData { data: pdvs } = pdu else {
                return Err(self.unavailable(format!("unexpected answer {pdu:?}")));
            };
            for pdv in pdvs {
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
        let _ = self.assoc.release();
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

/// The Study Instance UIDs the PACS has for `key` (C-FIND, Study Root, study level).
pub fn find_studies(
    source: &Destination,
    calling_ae: &str,
    key: &CohortKey,
) -> Result<Vec<String>, SendError> {
    let mut qr = Qr::open(source, calling_ae, STUDY_ROOT_FIND)?;
    qr.request(
        C_FIND_RQ,
        STUDY_ROOT_FIND,
        &[],
        &study_identifier(key.matching()),
    )?;
    let mut studies = Vec::new();
    loop {
        let (command, identifier) = qr.response()?;
        match status(&command) {
            // Pending: one match.
            0xFF00 | 0xFF01 => {
                if let Some(uid) = identifier.as_ref().and_then(|i| {
                    i.get(tags::STUDY_INSTANCE_UID)
                        .and_then(|e| e.to_str().ok())
                        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                }) {
                    if !uid.is_empty() && !studies.contains(&uid) {
                        studies.push(uid);
                    }
                }
            }
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
    Ok(studies)
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
        if s == 0xFF00 {
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
