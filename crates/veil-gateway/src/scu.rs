//! Sending: C-STORE of one Part 10 instance to a DIMSE destination, as the gateway's AE title.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use dicom_ul::pdu::{
    PDataValue, PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason,
};
use dicom_ul::ClientAssociationOptions;

use crate::dimse::{self, Command};
use crate::tls::ClientTls;

/// A DIMSE destination, written `dicom://AE_TITLE@host:port`, or `dicom+tls://…` for DICOM
/// TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub ae_title: String,
    pub host: String,
    pub port: u16,
    /// Over TLS (`dicom+tls://`).
    pub secure: bool,
    /// Trust and identity for TLS (None with `secure`: the system's trust store, no client
    /// certificate).
    pub tls: Option<ClientTls>,
}

impl FromStr for Destination {
    type Err = String;

    fn from_str(s: &str) -> Result<Destination, String> {
        let bad = || {
            format!(
                "{s:?} is not a destination such as dicom://PACS@10.1.2.3:104 (or dicom+tls://… for DICOM TLS)"
            )
        };
        let (secure, rest) = match (s.strip_prefix("dicom://"), s.strip_prefix("dicom+tls://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            _ => return Err(bad()),
        };
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
            secure,
            tls: None,
        })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.secure { "dicom+tls" } else { "dicom" };
        write!(
            f,
            "{scheme}://{}@{}:{}",
            self.ae_title, self.host, self.port
        )
    }
}

/// An association the gateway opened, in clear or over TLS.
pub(crate) enum Assoc {
    Plain(dicom_ul::ClientAssociation<std::net::TcpStream>),
    // Boxed: a TLS connection's state is kilobytes, a plain one's a few hundred bytes.
    Tls(Box<dicom_ul::ClientAssociation<dicom_ul::association::client::TlsStream>>),
}

impl Assoc {
    pub(crate) fn send(&mut self, pdu: &Pdu) -> Result<(), String> {
        match self {
            Assoc::Plain(a) => a.send(pdu),
            Assoc::Tls(a) => a.send(pdu),
        }
        .map_err(|e| e.to_string())
    }

    pub(crate) fn receive(&mut self) -> Result<Pdu, String> {
        match self {
            Assoc::Plain(a) => a.receive(),
            Assoc::Tls(a) => a.receive(),
        }
        .map_err(|e| e.to_string())
    }

    /// Sends a data set in P-DATA fragments on context `pc`.
    fn send_data(&mut self, pc: u8, data: &[u8]) -> std::io::Result<()> {
        match self {
            Assoc::Plain(a) => {
                let mut w = a.send_pdata(pc);
                w.write_all(data).and_then(|_| w.finish())
            }
            Assoc::Tls(a) => {
                let mut w = a.send_pdata(pc);
                w.write_all(data).and_then(|_| w.finish())
            }
        }
    }

    pub(crate) fn presentation_contexts(&self) -> &[PresentationContextNegotiated] {
        match self {
            Assoc::Plain(a) => a.presentation_contexts(),
            Assoc::Tls(a) => a.presentation_contexts(),
        }
    }

    pub(crate) fn release(self) {
        let _ = match self {
            Assoc::Plain(a) => a.release(),
            Assoc::Tls(a) => (*a).release(),
        };
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
    /// The destination accepts this SOP class in no transfer syntax the instance is in.
    #[error(
        "{destination} does not accept SOP class {sop_class} in transfer syntax {transfer_syntax}"
    )]
    NotAccepted {
        destination: String,
        sop_class: String,
        transfer_syntax: String,
    },
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

/// Opens an association to `destination` as `calling_ae`, proposing each (SOP class, transfer
/// syntax) of `contexts`; returns it and, per proposal, the accepted context's ID (None when the
/// peer refused it). Used for storing and for query/retrieve.
pub(crate) fn associate(
    destination: &Destination,
    calling_ae: &str,
    contexts: &[(&str, &str)],
    scp_role_for: &[&str],
    read_timeout: Duration,
) -> Result<(Assoc, Vec<Option<u8>>), SendError> {
    let mut options = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae)
        .called_ae_title(destination.ae_title.as_str())
        .connection_timeout(Duration::from_secs(10))
        .read_timeout(read_timeout);
    for (class, ts) in contexts {
        options = options.with_presentation_context(*class, vec![*ts]);
    }
    // C-GET: the PACS stores the retrieved instances back on this association, so we offer to
    // take the storage SCP role for their classes (SCP/SCU Role Selection, PS3.7 D.3.3.4).
    for class in scp_role_for {
        options = options.with_role_selection(*class, false, true);
    }
    let failed = |message: String| SendError::Unavailable {
        destination: destination.to_string(),
        message,
    };
    let address = (destination.host.as_str(), destination.port);
    let assoc = match (destination.secure, &destination.tls) {
        (false, _) => options.establish(address).map(Assoc::Plain),
        (true, tls) => {
            let tls = match tls {
                Some(t) => t.clone(),
                None => ClientTls::load(None, None).map_err(|e| failed(e.to_string()))?,
            };
            options
                .tls_config(tls.config)
                .server_name(&destination.host)
                .establish_tls(address)
                .map(|a| Assoc::Tls(Box::new(a)))
        }
    }
    .map_err(|e| failed(format!("association failed: {e}")))?;
    // Contexts are numbered 1, 3, 5… in the order proposed.
    let accepted = (0..contexts.len())
        .map(|i| {
            let id = (2 * i + 1) as u8;
            assoc
                .presentation_contexts()
                .iter()
                .any(|c| c.id == id && c.reason == PresentationContextResultReason::Acceptance)
                .then_some(id)
        })
        .collect();
    Ok((assoc, accepted))
}

/// An association to a destination, open for a batch of instances.
pub struct Sender {
    assoc: Assoc,
    destination: String,
    /// Accepted presentation contexts: (SOP class, transfer syntax) → context ID.
    contexts: Vec<((String, String), u8)>,
    next_message: u16,
}

/// An instance ready to send: its command fields, transfer syntax and data set bytes.
pub struct Outgoing<'a> {
    command: Command,
    ts: String,
    data: &'a [u8],
}

impl<'a> Outgoing<'a> {
    /// Its SOP Instance UID.
    pub fn sop_instance(&self) -> &str {
        &self.command.sop_instance
    }

    /// Splits a Part 10 file; an `Err` means this instance cannot be sent at all.
    pub fn of(part10: &'a [u8]) -> Result<Outgoing<'a>, SendError> {
        let (command, ts, data) = split(part10)?;
        Ok(Outgoing { command, ts, data })
    }
}

impl Sender {
    /// Opens an association proposing each (SOP class, transfer syntax) of `batch` (a batch
    /// holds fewer instances than the protocol's 128 contexts).
    pub fn open(
        destination: &Destination,
        calling_ae: &str,
        batch: &[&Outgoing<'_>],
    ) -> Result<Sender, SendError> {
        let mut pairs: Vec<(String, String)> = batch
            .iter()
            .map(|o| (o.command.sop_class.clone(), o.ts.clone()))
            .collect();
        pairs.sort();
        pairs.dedup();
        let proposed: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(c, t)| (c.as_str(), t.as_str()))
            .collect();
        let (assoc, accepted) = associate(
            destination,
            calling_ae,
            &proposed,
            &[],
            Duration::from_secs(60),
        )?;
        let contexts = pairs
            .into_iter()
            .zip(accepted)
            .filter_map(|(pair, id)| id.map(|id| (pair, id)))
            .collect();
        Ok(Sender {
            assoc,
            destination: destination.to_string(),
            contexts,
            next_message: 1,
        })
    }

    fn unavailable(&self, message: String) -> SendError {
        SendError::Unavailable {
            destination: self.destination.clone(),
            message,
        }
    }

    /// One C-STORE on the open association.
    pub fn store(&mut self, o: &Outgoing<'_>) -> Result<(), SendError> {
        let key = (o.command.sop_class.clone(), o.ts.clone());
        let Some(pc) = self
            .contexts
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, id)| *id)
        else {
            return Err(SendError::NotAccepted {
                destination: self.destination.clone(),
                sop_class: key.0,
                transfer_syntax: key.1,
            });
        };
        let mut command = o.command.clone();
        command.message_id = self.next_message;
        self.next_message = self.next_message.wrapping_add(1).max(1);
        let request = dimse::store_request(&command);
        let sent = self.assoc.send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: request,
            }],
        });
        sent.map_err(|e| self.unavailable(format!("sending failed: {e}")))?;
        let written = self.assoc.send_data(pc, o.data);
        written.map_err(|e| self.unavailable(format!("sending failed: {e}")))?;
        let status = match self.assoc.receive() {
            Ok(Pdu::PData { data }) => {
                let bytes: Vec<u8> = data.into_iter().flat_map(|p| p.data).collect();
                dimse::parse_status(&bytes).map_err(|m| self.unavailable(m))?
            }
            Ok(other) => return Err(self.unavailable(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(self.unavailable(format!("no answer: {e}"))),
        };
        // 0x0000 success; 0xB000, 0xB007, 0xB006: stored with a warning (coerced, not all
        // elements); 0xA7xx: out of resources (try later); anything else: refused.
        match status {
            dimse::SUCCESS => Ok(()),
            s if s & 0xF000 == 0xB000 => Ok(()),
            s if s & 0xFF00 == 0xA700 => {
                Err(self.unavailable(format!("out of resources (status {s:#06x})")))
            }
            status => Err(SendError::Refused {
                destination: self.destination.clone(),
                status,
            }),
        }
    }

    /// Releases the association.
    pub fn close(self) {
        self.assoc.release();
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
