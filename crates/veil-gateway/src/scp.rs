//! The listener: one thread per association, C-ECHO and C-STORE, every instance spooled before
//! it is acknowledged.
//!
//! A sender not on the allow-list (calling AE title, and address where one is given) or calling
//! another AE title than the gateway's is rejected at association (A-ASSOCIATE-RJ). Logs name
//! senders by AE title and address, never an instance's identifiers.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dicom_object::meta::FileMetaTableBuilder;
use dicom_ul::association::server::AccessControl;
use dicom_ul::association::Association;
use dicom_ul::association::ServerAssociation;
use dicom_ul::pdu::{
    AssociationRJServiceUserReason, PDataValue, PDataValueType, Pdu, PresentationContextNegotiated,
    UserIdentity,
};
use dicom_ul::ServerAssociationOptions;

use crate::config::{AllowedPeer, GatewayConfig};
use crate::dimse::{self, Command};
use crate::spool::Spool;

/// Implementation Class UID of files the gateway writes into its spool.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.178615281119625749770234571941713706092";
const VERIFICATION: &str = "1.2.840.10008.1.1";
/// An association idle this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// Asks a running [`serve`] to stop taking associations.
#[derive(Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why the gateway cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{address}: cannot listen: {error}")]
    Listen {
        address: SocketAddr,
        error: std::io::Error,
    },
}

/// Serves associations on `listener` until `stop`; each association runs on its own thread.
pub fn serve(
    config: Arc<GatewayConfig>,
    spool: Arc<Spool>,
    listener: TcpListener,
    stop: Stop,
) -> Result<(), ServeError> {
    let address = listener.local_addr().unwrap_or(config.listen);
    listener
        .set_nonblocking(true)
        .map_err(|error| ServeError::Listen { address, error })?;
    while !stop.stopped() {
        match listener.accept() {
            Ok((socket, peer)) => {
                let (config, spool) = (config.clone(), spool.clone());
                std::thread::spawn(move || association(socket, peer, &config, &spool));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => tracing::warn!("accept failed: {e}"),
        }
    }
    Ok(())
}

/// The allow-list, for one connection's address.
struct Senders {
    allow: Vec<AllowedPeer>,
    from: IpAddr,
}

impl AccessControl for Senders {
    fn check_access(
        &self,
        this_ae_title: &str,
        calling_ae_title: &str,
        called_ae_title: &str,
        _user_identity: Option<&UserIdentity>,
    ) -> Result<(), AssociationRJServiceUserReason> {
        if called_ae_title.trim() != this_ae_title {
            return Err(AssociationRJServiceUserReason::CalledAETitleNotRecognized);
        }
        let calling = calling_ae_title.trim();
        let listed = self
            .allow
            .iter()
            .any(|p| p.ae_title == calling && p.address.is_none_or(|a| a == self.from));
        if !listed {
            return Err(AssociationRJServiceUserReason::CallingAETitleNotRecognized);
        }
        Ok(())
    }
}

fn association(socket: TcpStream, peer: SocketAddr, config: &GatewayConfig, spool: &Spool) {
    let _ = socket.set_nonblocking(false);
    let mut options = ServerAssociationOptions::new()
        .ae_access_control(Senders {
            allow: config.allow.clone(),
            from: peer.ip(),
        })
        .ae_title(config.ae_title.as_str())
        .with_abstract_syntax(VERIFICATION)
        .promiscuous(true)
        .read_timeout(IDLE);
    let established = match &config.tls {
        None => options.establish(socket).map(|a| exchange(a, peer, spool)),
        Some(tls) => {
            options = options.tls_config(tls.clone());
            options
                .establish_tls(socket)
                .map(|a| exchange(a, peer, spool))
        }
    };
    if let Err(e) = established {
        tracing::info!("association from {peer} refused: {e}");
    }
}

/// Serves one accepted association (in clear or over TLS) until it is released or dropped.
fn exchange<S>(mut assoc: ServerAssociation<S>, peer: SocketAddr, spool: &Spool)
where
    S: std::io::Read + std::io::Write + dicom_ul::association::CloseSocket,
{
    let calling = assoc.peer_ae_title().to_string();
    tracing::info!("association from {calling} at {peer}");
    let mut exchange = Exchange::default();
    loop {
        let pdu = match assoc.receive() {
            Ok(p) => p,
            // Dropped mid-transfer: nothing of it was spooled or acknowledged.
            Err(e) => {
                tracing::info!("association from {calling} at {peer} ended: {e}");
                return;
            }
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    let Some((pc, reply)) =
                        exchange.take_with(pdv, assoc.presentation_contexts(), spool)
                    else {
                        continue;
                    };
                    let pdu = Pdu::PData {
                        data: vec![PDataValue {
                            presentation_context_id: pc,
                            value_type: PDataValueType::Command,
                            is_last: true,
                            data: reply,
                        }],
                    };
                    if let Err(e) = assoc.send(&pdu) {
                        tracing::info!("cannot answer {calling} at {peer}: {e}");
                        return;
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = assoc.send(&Pdu::ReleaseRP);
                return;
            }
            Pdu::AbortRQ { .. } => return,
            _ => {
                let _ = assoc.abort();
                return;
            }
        }
    }
}

/// One DIMSE message being received: its command, then its data set.
#[derive(Default)]
pub(crate) struct Exchange {
    command: Vec<u8>,
    request: Option<Command>,
    data: Vec<u8>,
}

impl Exchange {
    /// Takes one PDV of an association whose negotiated contexts are `contexts`; returns the
    /// presentation context and response when a message is complete.
    pub(crate) fn take_with(
        &mut self,
        pdv: PDataValue,
        contexts: &[PresentationContextNegotiated],
        spool: &Spool,
    ) -> Option<(u8, Vec<u8>)> {
        let pc = pdv.presentation_context_id;
        match pdv.value_type {
            PDataValueType::Command => {
                self.command.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    return None;
                }
                let request = match dimse::parse(&std::mem::take(&mut self.command)) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!("{e}");
                        return Some((
                            pc,
                            dimse::response(&Command::default(), 0, dimse::CANNOT_UNDERSTAND),
                        ));
                    }
                };
                match request.field {
                    dimse::C_ECHO_RQ => Some((
                        pc,
                        dimse::response(&request, dimse::C_ECHO_RSP, dimse::SUCCESS),
                    )),
                    dimse::C_STORE_RQ if request.has_data_set => {
                        self.request = Some(request);
                        None
                    }
                    field => {
                        let rsp = field | 0x8000;
                        Some((
                            pc,
                            dimse::response(&request, rsp, dimse::UNRECOGNIZED_OPERATION),
                        ))
                    }
                }
            }
            PDataValueType::Data => {
                self.data.extend_from_slice(&pdv.data);
                if !pdv.is_last {
                    return None;
                }
                let data = std::mem::take(&mut self.data);
                let request = self.request.take()?;
                let ts = contexts
                    .iter()
                    .find(|c| c.id == pc)
                    .map(|c| c.transfer_syntax.clone())
                    .unwrap_or_default();
                let status = store(&request, &ts, &data, spool);
                Some((pc, dimse::response(&request, dimse::C_STORE_RSP, status)))
            }
        }
    }
}

/// Spools one received data set as a Part 10 file; the C-STORE status to answer.
pub(crate) fn store(request: &Command, transfer_syntax: &str, data: &[u8], spool: &Spool) -> u16 {
    if request.sop_class.is_empty() || request.sop_instance.is_empty() || transfer_syntax.is_empty()
    {
        return dimse::CANNOT_UNDERSTAND;
    }
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(request.sop_class.as_str())
        .media_storage_sop_instance_uid(request.sop_instance.as_str())
        .transfer_syntax(transfer_syntax.trim_end_matches('\0'))
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .build();
    let Ok(meta) = meta else {
        return dimse::CANNOT_UNDERSTAND;
    };
    let mut part10 = vec![0u8; 128];
    part10.extend_from_slice(b"DICM");
    if meta.write(&mut part10).is_err() {
        return dimse::CANNOT_UNDERSTAND;
    }
    part10.extend_from_slice(data);
    match spool.put(&part10) {
        Ok(_) => dimse::SUCCESS,
        Err(e) => {
            tracing::warn!("{e}");
            dimse::OUT_OF_RESOURCES
        }
    }
}
