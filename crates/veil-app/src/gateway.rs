//! `veil gateway`: the DICOM network front, set up from its configuration file.
//!
//! It receives (accepts listed senders, answers C-ECHO, spools every C-STORE durably and
//! sealed; see `veil-gateway`) and, with a `[route]`, drains the spool: each instance goes
//! through the same pipeline `veil deid` builds ([`crate::build()`], same key and policy, so the
//! same bytes) and is stored at the route's destination.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use veil_gateway::{Deidentify, DrainStatus, Forwarder, GatewayConfig, Prepared, Spool, Stop};
use veil_pipeline::{InstanceOutcome, Pipeline};

use crate::build::{build, load_key, Settings};
use crate::AppError;

/// The route's pipeline, as the forwarder's de-identification step.
struct RoutePipeline(Pipeline);

impl Deidentify for RoutePipeline {
    fn deidentify(&self, part10: &[u8]) -> Prepared {
        match self.0.deidentify_bytes(part10) {
            InstanceOutcome::WaitsForSeries { key } => Prepared::Series(key),
            other => Prepared::Ready(released(other)),
        }
    }

    fn deidentify_series(&self, members: &[Vec<u8>]) -> Vec<Result<Vec<u8>, (String, String)>> {
        self.0
            .deidentify_group(members)
            .into_iter()
            .map(released)
            .collect()
    }
}

/// The bytes to send, or why not.
fn released(outcome: InstanceOutcome) -> Result<Vec<u8>, (String, String)> {
    match outcome {
        InstanceOutcome::Released { bytes, .. } => Ok(bytes),
        InstanceOutcome::Suppressed => Err((
            "suppressed".into(),
            "the policy does not release this kind of instance".into(),
        )),
        InstanceOutcome::HeldBack { reason, detail } => Err((reason, detail)),
        InstanceOutcome::WaitsForSeries { .. } => Err((
            "series_stage".into(),
            "the series stage did not take this instance".into(),
        )),
    }
}

/// Reads and checks a gateway configuration (errors name file, line, column and field).
pub fn check(path: &Path) -> Result<GatewayConfig, AppError> {
    GatewayConfig::load(path).map_err(|e| AppError::Usage(e.to_string()))
}

/// How often the spool is drained while the destination takes instances.
const POLL: std::time::Duration = std::time::Duration::from_millis(250);
/// The longest wait between attempts while the destination fails.
const MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(30);

/// A gateway ready to serve: configuration checked, key loaded, spool open, port bound.
pub struct Gateway {
    config: Arc<GatewayConfig>,
    spool: Arc<Spool>,
    listener: TcpListener,
    forwarder: Option<Forwarder>,
}

impl Gateway {
    /// Everything that can be wrong with the setup fails here, before the first association.
    pub fn open(config_path: &Path) -> Result<Gateway, AppError> {
        let config = check(config_path)?;
        let key = load_key(config.key.as_deref())?;
        let spool = Spool::open(&config.spool_dir, &key)
            .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
        let spool = Arc::new(spool);
        let forwarder = match &config.route {
            None => None,
            Some(route) => {
                let settings = Settings {
                    policy: route.policy.clone(),
                    // A pipeline that runs over files needs an output root; this one only
                    // de-identifies instances in memory and never writes there.
                    out: config.spool_dir.join("out-unused"),
                    ..Settings::default()
                };
                let pipeline = build(settings.resolve_with_key(key.clone())?);
                Some(Forwarder {
                    spool: spool.clone(),
                    deid: Box::new(RoutePipeline(pipeline)),
                    destination: route.destination.clone(),
                    calling_ae: config.ae_title.clone(),
                    connections: route.connections,
                    series_quiet: route.series_quiet,
                    waiting: Default::default(),
                })
            }
        };
        let listener = TcpListener::bind(config.listen).map_err(|error| AppError::Io {
            what: "cannot listen on",
            path: config.listen.to_string().into(),
            error,
        })?;
        Ok(Gateway {
            config: Arc::new(config),
            spool,
            listener,
            forwarder,
        })
    }

    /// Where it listens (the port chosen when the configuration says 0).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }

    /// The AE title senders call.
    pub fn ae_title(&self) -> &str {
        &self.config.ae_title
    }

    /// Serves until `stop` (a process is usually stopped by a signal: nothing acknowledged is
    /// lost, since every instance is spooled before its C-STORE response).
    pub fn serve(self, stop: Stop) -> Result<(), AppError> {
        let drain = self.forwarder.map(|f| {
            let stop = stop.clone();
            std::thread::spawn(move || f.run(&stop, POLL, MAX_BACKOFF))
        });
        let served = veil_gateway::serve(self.config, self.spool, self.listener, stop.clone())
            .map_err(|e| AppError::Usage(e.to_string()));
        stop.stop();
        if let Some(d) = drain {
            let _ = d.join();
        }
        served
    }

    /// The route's destination, if any.
    pub fn destination(&self) -> Option<String> {
        self.forwarder.as_ref().map(|f| f.destination.to_string())
    }
}

/// What `veil gateway status` reports: the queue, what was held back and why, and the drain.
#[derive(Debug, serde::Serialize)]
pub struct GatewayStatus {
    pub spool: std::path::PathBuf,
    /// Instances received and not yet delivered (not yet de-identified, or de-identified and
    /// waiting for the destination).
    pub waiting: usize,
    pub waiting_bytes: u64,
    /// Held-back instances by reason code.
    pub held_back: std::collections::BTreeMap<String, usize>,
    pub destination: Option<String>,
    pub drain: DrainStatus,
}

/// Reads a gateway's state from its spool (while it runs or not).
pub fn status(config_path: &Path) -> Result<GatewayStatus, AppError> {
    let config = check(config_path)?;
    let key = load_key(config.key.as_deref())?;
    let spool = Spool::attach(&config.spool_dir, &key)
        .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
    let mut waiting = spool
        .list()
        .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
    waiting.extend(spool.list_outgoing().unwrap_or_default());
    let waiting_bytes = waiting
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(GatewayStatus {
        spool: config.spool_dir.clone(),
        waiting: waiting.len(),
        waiting_bytes,
        held_back: spool.held_reasons(),
        destination: config.route.as_ref().map(|r| r.destination.to_string()),
        drain: spool.status(),
    })
}

/// One cohort row's pull: how many studies the PACS found, and the C-MOVE sub-operations.
#[derive(Debug, serde::Serialize)]
pub struct PulledRow {
    /// 1-based row number in the list (the row's value is identifying: never repeated here).
    pub row: usize,
    pub studies: usize,
    pub moved: u32,
    pub failed: u32,
    /// Why the row could not be pulled (query or retrieve refused, PACS unavailable).
    pub error: Option<String>,
}

/// Pulls a cohort: for each row of `cohort` (a CSV whose header names the key column:
/// `accession`, `patient_id` or `study_uid`), C-FIND at `from`, then C-MOVE of each study to the
/// gateway (which must be running to receive them, and listed at the PACS under its AE title).
pub fn pull(config_path: &Path, from: &str, cohort: &Path) -> Result<Vec<PulledRow>, AppError> {
    use veil_gateway::pull::{find_studies, move_study, CohortKey};
    let config = check(config_path)?;
    let source: veil_gateway::Destination = from
        .parse()
        .map_err(|m: String| AppError::Usage(format!("--from: {m}")))?;
    let mut reader = csv::Reader::from_path(cohort).map_err(|e| {
        AppError::Usage(format!(
            "{}: cannot read the cohort list: {e}",
            cohort.display()
        ))
    })?;
    let column = reader
        .headers()
        .ok()
        .and_then(|h| h.get(0).map(str::to_string))
        .unwrap_or_default();
    if CohortKey::from_column(&column, "").is_none() {
        return Err(AppError::Usage(format!(
            "{}: the first column's header must be accession, patient_id or study_uid (it is {column:?})",
            cohort.display()
        )));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record
            .map_err(|e| AppError::Usage(format!("{}: row {}: {e}", cohort.display(), i + 1)))?;
        let value = record.get(0).unwrap_or("").trim();
        let mut row = PulledRow {
            row: i + 1,
            studies: 0,
            moved: 0,
            failed: 0,
            error: None,
        };
        let Some(key) = CohortKey::from_column(&column, value).filter(|_| !value.is_empty()) else {
            row.error = Some("empty value".into());
            rows.push(row);
            continue;
        };
        match find_studies(&source, &config.ae_title, &key) {
            Err(e) => row.error = Some(e.to_string()),
            Ok(studies) => {
                row.studies = studies.len();
                for study in studies {
                    match move_study(&source, &config.ae_title, &study, &config.ae_title) {
                        Ok(m) => {
                            row.moved += m.completed;
                            row.failed += m.failed;
                            if m.status != 0 && m.status & 0xF000 != 0xB000 {
                                row.error =
                                    Some(format!("C-MOVE ended with status {:#06x}", m.status));
                            }
                        }
                        Err(e) => row.error = Some(e.to_string()),
                    }
                }
            }
        }
        rows.push(row);
    }
    Ok(rows)
}
