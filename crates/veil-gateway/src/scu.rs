//! Sending: C-STORE of one Part 10 instance to a DIMSE destination, as the gateway's AE title.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;

use crate::dimse::{self, Command};

/// A DIMSE destination, written `dicom://AE_TITLE@host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        let bad = || format!("{s:?} is not a destination such as dicom://PACS@10.1.2.3:104");
        let rest = s.strip_prefix("dicom://").ok_or_else(bad)?;
        let (ae, hostport) = rest.split_once('@').ok_or_else(bad)?;
        let (host, port) = hostport.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        if ae.is_empty() || ae.len() > 16 || host.is_empty() {
            return Err(bad());
        }
        Ok(Destination {
            ae_title: ae.to_string(),
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "dicom://{}@{}:{}", self.ae_title, self.host, self.port)
    }
}

/// Why an instance was not stored (the destination keeps nothing of a failed C-STORE).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Down, refusing, or dropping the association: try again later.
    #[error("{destination}: {message}")]
    Unavailable {
        destination: String,
        message: String,
    },
    /// The destination answered the C-STORE with a failure status.
    #[error("{destination}: C-STORE failed with status {status:#06x}")]
    Refused { destination: String, status: u16 },
    /// The instance itself cannot be sent (no file meta, an unknown transfer syntax).
    #[error("cannot send the instance: {0}")]
    Instance(String),
}

/// The pieces of a Part 10 file a C-STORE needs: SOP class and instance, transfer syntax, and
/// the data set's bytes after the file meta group.
fn split(part10: &[u8]) -> Result<(Command, String, &[u8]), SendError> {
    let bad = |m: &str| SendError::Instance(m.to_string());
    if part10.get(128..132) != Some(b"DICM") {
        return Err(bad("not a Part 10 file"));
    }
    let meta = dicom_object::meta::FileMetaTable::from_reader(&part10[128..])
        .map_err(|e| SendError::Instance(format!("unreadable file meta: {e}")))?;
    // (0002,0000) UL, explicit VR: its value is the length of the rest of the group.
    if part10.get(132..138) != Some(&[2, 0, 0, 0, b'U', b'L'][..]) {
        return Err(bad("file meta without its group length"));
    }
    let group = u32::from_le_bytes(part10[140..144].try_into().unwrap()) as usize;
    let data = part10
        .get(144 + group..)
        .ok_or_else(|| bad("file meta longer than the file"))?;
    let command = Command {
        field: dimse::C_STORE_RQ,
        message_id: 1,
        sop_class: meta
            .media_storage_sop_class_uid()
            .trim_end_matches('\0')
            .to_string(),
        sop_instance: meta
            .media_storage_sop_instance_uid()
            .trim_end_matches('\0')
            .to_string(),
        has_data_set: true,
    };
    let ts = meta.transfer_syntax().trim_end_matches('\0').to_string();
    Ok((command, ts, data))
}

/// Stores one instance at `destination`, calling as `calling_ae`.
pub fn store(destination: &Destination, calling_ae: &str, part10: &[u8]) -> Result<(), SendError> {
    let (command, ts, data) = split(part10)?;
    let unavailable = |message: String| SendError::Unavailable {
        destination: destination.to_string(),
        message,
    };
    let mut assoc = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae)
        .called_ae_title(destination.ae_title.as_str())
        .with_presentation_context(command.sop_class.as_str(), vec![ts.as_str()])
        .connection_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .establish((destination.host.as_str(), destination.port))
        .map_err(|e| unavailable(format!("association failed: {e}")))?;
    let pc = assoc
        .presentation_contexts()
        .iter()
        .find(|c| c.reason == PresentationContextResultReason::Acceptance)
        .map(|c| c.id)
        .ok_or_else(|| unavailable(format!("{} in {ts} not accepted", command.sop_class)))?;
    let request = dimse::store_request(&command);
    assoc
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: request,
            }],
        })
        .map_err(|e| unavailable(format!("sending failed: {e}")))?;
    {
        let mut writer = assoc.send_pdata(pc);
        writer
            .write_all(data)
            .and_then(|_| writer.finish())
            .map_err(|e| unavailable(format!("sending failed: {e}")))?;
    }
    let status = match assoc.receive() {
        Ok(Pdu::PData { data }) => {
            let bytes: Vec<u8> = data.into_iter().flat_map(|p| p.data).collect();
            dimse::parse_status(&bytes).map_err(unavailable)?
        }
        Ok(other) => return Err(unavailable(format!("unexpected answer {other:?}"))),
        Err(e) => return Err(unavailable(format!("no answer: {e}"))),
    };
    let _ = assoc.release();
    // 0x0000 success; 0xB000, 0xB007, 0xB006: stored with a warning (coerced, not all elements).
    if status == dimse::SUCCESS || status & 0xF000 == 0xB000 {
        Ok(())
    } else {
        Err(SendError::Refused {
            destination: destination.to_string(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_parse_and_print_back() {
        let d: Destination = "dicom://ORTHANC@127.0.0.1:4242".parse().unwrap();
        assert_eq!(d.ae_title, "ORTHANC");
        assert_eq!(d.to_string(), "dicom://ORTHANC@127.0.0.1:4242");
        for bad in ["ORTHANC@h:1", "dicom://h:1", "dicom://A@h", "dicom://A@h:x"] {
            assert!(bad.parse::<Destination>().is_err(), "{bad}");
        }
    }
}
