//! `veil gateway`: the DICOM network front, set up from its configuration file.
//!
//! It receives (accepts listed senders, answers C-ECHO, spools every C-STORE durably and
//! sealed; see `veil-gateway`) and, with a `[route]`, drains the spool: each instance goes
//! through the same pipeline `veil deid` builds ([`crate::build()`], same key and policy, so the
//! same bytes) and is stored at the route's destination.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use veil_gateway::{Deidentify, DrainStatus, Forwarder, GatewayConfig, Prepared, Spool, Stop};
use veil_pipeline::{InstanceOutcome, Pipeline};

use crate::build::{build, load_key, Settings};
use crate::release::{ConsentGate, ReleaseFacts};
use crate::AppError;

/// The route's pipeline, as the forwarder's de-identification step, with the consent gate
/// and ledger writer of a route that releases to a recipient.
struct RoutePipeline {
    pipeline: Pipeline,
    release: Option<RouteRelease>,
}

/// A consent-gated route: whom it releases to, the registry that decides, and what each
/// ledger entry says.
struct RouteRelease {
    store: veil_store::Store,
    institution: veil_store::Settings,
    facts: ReleaseFacts,
    /// (original study, modality) pairs whose details were recorded.
    studies: Mutex<HashSet<(String, String)>>,
}

/// The consent gate as a release observer for in-memory de-identification (nothing is
/// written, so nothing is committed through it).
struct Admit<'a>(&'a ConsentGate<'a>);

impl veil_pipeline::ReleaseObserver for Admit<'_> {
    fn admit(&self, patient: &veil_pipeline::PatientContext) -> veil_pipeline::Admission {
        self.0.admit(patient)
    }

    fn commit(
        &self,
        _: &veil_pipeline::CommittedInstance,
        rename: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> Result<(), veil_pipeline::RecordError> {
        rename().map_err(veil_pipeline::RecordError::Publish)
    }
}

impl RouteRelease {
    /// Records a released instance in the ledger unless it already is (the same instance
    /// de-identified again after a crash gives the same bytes, so the same entry).
    fn record(&self, instance: &veil_pipeline::CommittedInstance) -> Result<(), String> {
        let released = &instance.released.sop_instance;
        let path = instance.output_relative.display().to_string();
        let unavailable = |e: veil_store::StoreError| format!("the ledger is unavailable: {e}");
        if self
            .store
            .is_recorded(released, &path, &instance.sha256)
            .map_err(unavailable)?
        {
            return Ok(());
        }
        let entry = self
            .facts
            .entry(&self.store, instance, &self.studies)
            .map_err(unavailable)?;
        self.store.append(&entry, || Ok(())).map_err(unavailable)?;
        Ok(())
    }
}

impl RoutePipeline {
    /// What the forwarder does with an outcome: a released instance of a consent-gated route
    /// is recorded in the ledger before it may leave.
    fn prepared(&self, outcome: InstanceOutcome) -> Prepared {
        match (outcome, &self.release) {
            (InstanceOutcome::WaitsForSeries { key }, _) => Prepared::Series(key),
            (InstanceOutcome::Excluded { reason, .. }, _) => Prepared::Excluded(reason),
            (
                InstanceOutcome::Released {
                    bytes, instance, ..
                },
                Some(release),
            ) => match release.record(&instance) {
                Ok(()) => Prepared::Ready(Ok(bytes)),
                Err(why) => Prepared::Later(why),
            },
            (InstanceOutcome::Released { bytes, .. }, None) => Prepared::Ready(Ok(bytes)),
            (InstanceOutcome::Suppressed, _) => Prepared::Ready(Err((
                "suppressed".into(),
                "the policy does not release this kind of instance".into(),
            ))),
            (InstanceOutcome::HeldBack { reason, detail }, _) => {
                Prepared::Ready(Err((reason, detail)))
            }
        }
    }

    fn gate(&self) -> Option<ConsentGate<'_>> {
        let r = self.release.as_ref()?;
        // A gate per instance: a consent recorded or withdrawn while the gateway runs counts
        // from the next instance on.
        Some(ConsentGate::new(&r.store, &r.institution, &r.facts.purpose))
    }
}

impl Deidentify for RoutePipeline {
    fn deidentify(&self, part10: &[u8]) -> Prepared {
        let outcome = match self.gate() {
            None => self.pipeline.deidentify_bytes(part10),
            Some(gate) => self.pipeline.deidentify_bytes_with(part10, &Admit(&gate)),
        };
        self.prepared(outcome)
    }

    fn deidentify_series(&self, members: &[Vec<u8>]) -> Vec<Prepared> {
        let outcomes = match self.gate() {
            None => self.pipeline.deidentify_group(members),
            Some(gate) => self.pipeline.deidentify_group_with(members, &Admit(&gate)),
        };
        outcomes.into_iter().map(|o| self.prepared(o)).collect()
    }
}

/// Opens a consent-gated route's registry, checks its recipient and purpose as `veil release`
/// does, and begins its release; returns it with the recipient's key (pseudonyms and UIDs
/// unlinkable across recipients, equal to `veil release` output for the same recipient).
fn open_release(
    route: &veil_gateway::config::RouteRelease,
    master: &veil_keys::Key,
    settings: &Settings,
) -> Result<(RouteRelease, veil_keys::Key), AppError> {
    let store = veil_store::Store::open(route.store.as_deref(), Some(master))?;
    let institution = crate::registry::institution_settings(None)?;
    institution
        .check_purpose(&route.purpose)
        .map_err(AppError::Store)?;
    let recipient = crate::release::recipient_checked(&store, &route.recipient, &route.purpose)?;
    crate::release::purpose_receivable(&store, &institution, &route.purpose)?;
    let policy = crate::build::load_policy(settings.policy.as_deref())?;
    let policy_hash = policy.digest.clone();
    let release_id = store.begin_release(
        &recipient,
        &route.purpose,
        &policy_hash,
        env!("CARGO_PKG_VERSION"),
    )?;
    let key = master.subkey("recipient", &recipient);
    let release = RouteRelease {
        store,
        institution,
        facts: ReleaseFacts {
            recipient,
            purpose: route.purpose.clone(),
            release_id,
            policy_hash,
        },
        studies: Mutex::new(HashSet::new()),
    };
    Ok((release, key))
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
    /// One per lane (route and destination).
    forwarders: Vec<Forwarder>,
}

/// A route's pipeline, built once for all its destinations.
fn route_pipeline(
    config: &GatewayConfig,
    route: &veil_gateway::config::Route,
    key: &veil_keys::Key,
) -> Result<Arc<RoutePipeline>, AppError> {
    let settings = Settings {
        policy: route.policy.clone(),
        // A pipeline that runs over files needs an output root; this one only de-identifies
        // instances in memory and never writes there.
        out: config.spool_dir.join("out-unused"),
        ..Settings::default()
    };
    let (release, key) = match &route.release {
        None => (None, key.clone()),
        Some(r) => {
            let (release, key) = open_release(r, key, &settings)?;
            (Some(release), key)
        }
    };
    let mut resolved = settings.resolve_with_key(key)?;
    if release.is_some() {
        // As `veil release`: pseudonyms are the recipient's keyed ones.
        resolved.patient_map = None;
    }
    Ok(Arc::new(RoutePipeline {
        pipeline: build(resolved),
        release,
    }))
}

/// Opens the spool with the configuration's lanes (each lane's `tmp/` cleared: nothing is
/// under way at start).
fn open_spool(config: &GatewayConfig, key: &veil_keys::Key) -> Result<Spool, AppError> {
    let spool = Spool::open(&config.spool_dir, key)
        .and_then(|s| s.with_lanes(&config.lane_names()))
        .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
    for lane in spool.lanes() {
        lane.clear_tmp()
            .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
    }
    refuse_orphans(config, &spool)?;
    Ok(spool)
}

/// Instances waiting in a part of the spool no lane of this configuration drains (the routes
/// changed while instances waited) stop the start: they would never be sent.
fn refuse_orphans(config: &GatewayConfig, spool: &Spool) -> Result<(), AppError> {
    let lanes = config.lane_names();
    let lanes_dir = config.spool_dir.join("lanes");
    let mut orphans: Vec<String> = Vec::new();
    // The spool's own incoming/ and outgoing/ (not its lanes') are the single lane's.
    let root_waiting =
        spool.list().unwrap_or_default().len() + spool.list_outgoing().unwrap_or_default().len();
    if !lanes.is_empty() && root_waiting > 0 {
        orphans.push("the single-route spool".into());
    }
    for entry in std::fs::read_dir(&lanes_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let busy = ["incoming", "outgoing"].iter().any(|area| {
            std::fs::read_dir(entry.path().join(area)).is_ok_and(|mut d| d.next().is_some())
        });
        if busy && !lanes.contains(&name) {
            orphans.push(format!("lane {name}"));
        }
    }
    match orphans.is_empty() {
        true => Ok(()),
        false => Err(AppError::Usage(format!(
            "spool: instances wait in {} that this configuration's routes no longer drain; start the gateway with the routes they were received for until `veil gateway status` shows nothing waiting, then change the routes",
            orphans.join(", ")
        ))),
    }
}

impl Gateway {
    /// Everything that can be wrong with the setup fails here, before the first association.
    pub fn open(config_path: &Path) -> Result<Gateway, AppError> {
        let config = check(config_path)?;
        let key = load_key(config.key.as_deref())?;
        let spool = Arc::new(open_spool(&config, &key)?);
        let pipelines = config
            .routes
            .iter()
            .map(|route| route_pipeline(&config, route, &key))
            .collect::<Result<Vec<_>, _>>()?;
        let forwarders = config
            .lanes()
            .into_iter()
            .zip(spool.lanes())
            .map(|(lane, lane_spool)| {
                let route = &config.routes[lane.route];
                Forwarder {
                    spool: Arc::new(lane_spool),
                    deid: pipelines[lane.route].clone(),
                    destination: route.destinations[lane.destination].clone(),
                    calling_ae: config.ae_title.clone(),
                    connections: route.connections,
                    series_quiet: route.series_quiet,
                    waiting: Default::default(),
                }
            })
            .collect();
        let listener = TcpListener::bind(config.listen).map_err(|error| AppError::Io {
            what: "cannot listen on",
            path: config.listen.to_string().into(),
            error,
        })?;
        Ok(Gateway {
            config: Arc::new(config),
            spool,
            listener,
            forwarders,
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
        let drains: Vec<_> = self
            .forwarders
            .into_iter()
            .map(|f| {
                let stop = stop.clone();
                std::thread::spawn(move || f.run(&stop, POLL, MAX_BACKOFF))
            })
            .collect();
        let served = veil_gateway::serve(self.config, self.spool, self.listener, stop.clone())
            .map_err(|e| AppError::Usage(e.to_string()));
        stop.stop();
        for d in drains {
            let _ = d.join();
        }
        served
    }

    /// The destinations instances go to (none: the gateway only receives).
    pub fn destinations(&self) -> Vec<String> {
        self.forwarders
            .iter()
            .map(|f| f.destination.to_string())
            .collect()
    }
}

/// One lane's state: a route's destination, its queue, what it held back and its drain.
#[derive(Debug, serde::Serialize)]
pub struct LaneStatus {
    pub route: String,
    pub destination: String,
    pub waiting: usize,
    pub waiting_bytes: u64,
    /// Held-back instances by reason code.
    pub held_back: std::collections::BTreeMap<String, usize>,
    pub drain: DrainStatus,
}

/// What `veil gateway status` reports: the queue, what was held back and why, and the drain,
/// summed over the lanes, then lane by lane.
#[derive(Debug, serde::Serialize)]
pub struct GatewayStatus {
    pub spool: std::path::PathBuf,
    /// Instances received and not yet delivered (not yet de-identified, or de-identified and
    /// waiting for the destination), over every lane.
    pub waiting: usize,
    pub waiting_bytes: u64,
    /// Held-back instances by reason code.
    pub held_back: std::collections::BTreeMap<String, usize>,
    /// The destinations, comma-separated (None: receive only).
    pub destination: Option<String>,
    /// Delivered, held back and excluded summed; the first failing destination's failure.
    pub drain: DrainStatus,
    pub lanes: Vec<LaneStatus>,
}

/// One lane's state, read from its spool.
fn lane_status(spool: &Spool, route: String, destination: String) -> Result<LaneStatus, AppError> {
    let mut waiting = spool
        .list()
        .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
    waiting.extend(spool.list_outgoing().unwrap_or_default());
    let waiting_bytes = waiting
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    Ok(LaneStatus {
        route,
        destination,
        waiting: waiting.len(),
        waiting_bytes,
        held_back: spool.held_reasons(),
        drain: spool.status(),
    })
}

/// Reads a gateway's state from its spool (while it runs or not).
pub fn status(config_path: &Path) -> Result<GatewayStatus, AppError> {
    let config = check(config_path)?;
    let key = load_key(config.key.as_deref())?;
    // Attached: a status never creates a spool; lanes a new route adds are created empty.
    let spool = Spool::attach(&config.spool_dir, &key)
        .and_then(|s| s.with_lanes(&config.lane_names()))
        .map_err(|e| AppError::Usage(format!("spool: {e}")))?;
    let mut lanes = Vec::new();
    let mut destinations = Vec::new();
    for (lane, lane_spool) in config.lanes().into_iter().zip(spool.lanes()) {
        let route = &config.routes[lane.route];
        let destination = route.destinations[lane.destination].to_string();
        destinations.push(destination.clone());
        lanes.push(lane_status(&lane_spool, route.name.clone(), destination)?);
    }
    if lanes.is_empty() {
        // Receive only: the spool is its one lane, with no destination.
        lanes.push(lane_status(&spool, String::new(), String::new())?);
    }
    let mut total = GatewayStatus {
        spool: config.spool_dir.clone(),
        waiting: 0,
        waiting_bytes: 0,
        held_back: Default::default(),
        destination: (!destinations.is_empty()).then(|| destinations.join(", ")),
        drain: DrainStatus::default(),
        lanes: Vec::new(),
    };
    for l in &lanes {
        total.waiting += l.waiting;
        total.waiting_bytes += l.waiting_bytes;
        for (reason, n) in &l.held_back {
            *total.held_back.entry(reason.clone()).or_insert(0) += n;
        }
        total.drain.delivered += l.drain.delivered;
        total.drain.held_back += l.drain.held_back;
        total.drain.excluded += l.drain.excluded;
        if total.drain.failing.is_none() {
            total.drain.failing = l.drain.failing.clone();
            total.drain.failing_since = l.drain.failing_since;
        }
    }
    total.lanes = lanes;
    Ok(total)
}

/// One cohort row's pull: how many studies the PACS found, and how many instances came.
#[derive(Debug, serde::Serialize)]
pub struct PulledRow {
    /// 1-based row number in the list (the row's value is identifying: never repeated here).
    pub row: usize,
    pub studies: usize,
    /// Instances retrieved (C-MOVE or C-GET sub-operations completed, WADO-RS parts spooled).
    pub retrieved: u32,
    pub failed: u32,
    /// Why the row could not be pulled (query or retrieve refused, PACS unavailable).
    pub error: Option<String>,
}

/// Where a cohort is pulled from, and how its studies are retrieved.
pub enum PullSource {
    /// C-FIND, then C-MOVE to the running gateway.
    Move(veil_gateway::Destination),
    /// C-FIND, then C-GET into the spool.
    Get(veil_gateway::Destination),
    /// QIDO-RS, then WADO-RS into the spool.
    Web(veil_gateway::web_pull::DicomWebSource),
}

impl PullSource {
    /// `from` is `dicom://AE@host:port` (with `retrieve` "move", the default, or "get") or a
    /// DICOMweb root `https://…` (with the bearer token in the variable `token_env`).
    pub fn parse(
        from: &str,
        retrieve: Option<&str>,
        token_env: Option<String>,
    ) -> Result<PullSource, AppError> {
        let usage = |m: String| AppError::Usage(format!("--from: {m}"));
        if from.starts_with("http://") || from.starts_with("https://") {
            if retrieve.is_some_and(|r| r != "wado") {
                return Err(AppError::Usage(
                    "--retrieve move|get is for a dicom:// source; a DICOMweb source is pulled with WADO-RS".into(),
                ));
            }
            let web = veil_gateway::web_pull::DicomWebSource::new(from, token_env);
            return web.map(PullSource::Web).map_err(usage);
        }
        let source = from.parse().map_err(usage)?;
        match retrieve.unwrap_or("move") {
            "move" => Ok(PullSource::Move(source)),
            "get" => Ok(PullSource::Get(source)),
            other => Err(AppError::Usage(format!(
                "--retrieve {other}: use move (C-MOVE to the gateway) or get (C-GET)"
            ))),
        }
    }
}

/// The cohort list's key column and rows.
fn read_cohort(cohort: &Path) -> Result<(String, Vec<String>), AppError> {
    use veil_gateway::pull::CohortKey;
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
    let mut values = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record
            .map_err(|e| AppError::Usage(format!("{}: row {}: {e}", cohort.display(), i + 1)))?;
        values.push(record.get(0).unwrap_or("").trim().to_string());
    }
    Ok((column, values))
}

/// Pulls a cohort: for each row of `cohort` (a CSV whose header names the key column:
/// `accession`, `patient_id` or `study_uid`), finds the studies at the source and retrieves
/// them. C-MOVE sends them to the gateway (which must be running and listed at the PACS under
/// its AE title); C-GET and WADO-RS put them in the gateway's spool directly, where the gateway
/// routes them when it runs.
pub fn pull(
    config_path: &Path,
    source: &PullSource,
    cohort: &Path,
) -> Result<Vec<PulledRow>, AppError> {
    use veil_gateway::pull::CohortKey;
    let config = check(config_path)?;
    let (column, values) = read_cohort(cohort)?;
    let spool = match source {
        PullSource::Move(_) => None,
        PullSource::Get(_) | PullSource::Web(_) => {
            let key = load_key(config.key.as_deref())?;
            let spool = Spool::join(&config.spool_dir, &key)
                .and_then(|s| s.with_lanes(&config.lane_names()));
            Some(spool.map_err(|e| AppError::Usage(format!("spool: {e}")))?)
        }
    };
    let mut rows = Vec::new();
    for (i, value) in values.iter().enumerate() {
        let mut row = PulledRow {
            row: i + 1,
            studies: 0,
            retrieved: 0,
            failed: 0,
            error: None,
        };
        match CohortKey::from_column(&column, value).filter(|_| !value.is_empty()) {
            None => row.error = Some("empty value".into()),
            Some(key) => pull_row(&config, source, spool.as_ref(), &key, &mut row),
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Finds and retrieves one row's studies, recording counts and the last error in `row`.
fn pull_row(
    config: &GatewayConfig,
    source: &PullSource,
    spool: Option<&Spool>,
    key: &veil_gateway::pull::CohortKey,
    row: &mut PulledRow,
) {
    use veil_gateway::pull::{find_studies, get_study, move_study, Moved};
    let ae = config.ae_title.as_str();
    let mut record =
        |outcome: Result<Moved, veil_gateway::scu::SendError>, verb: &str| match outcome {
            Ok(m) => {
                row.retrieved += m.completed;
                row.failed += m.failed;
                if m.status != 0 && m.status & 0xF000 != 0xB000 {
                    row.error = Some(format!("{verb} ended with status {:#06x}", m.status));
                }
            }
            Err(e) => row.error = Some(e.to_string()),
        };
    match (source, spool) {
        (PullSource::Web(web), Some(spool)) => match web.find_studies(key) {
            Err(e) => row.error = Some(e.to_string()),
            Ok(studies) => {
                row.studies = studies.len();
                for study in studies {
                    match web.retrieve_study(&study, spool) {
                        Ok(n) => row.retrieved += n,
                        Err(e) => row.error = Some(e.to_string()),
                    }
                }
            }
        },
        (PullSource::Move(pacs) | PullSource::Get(pacs), _) => match find_studies(pacs, ae, key) {
            Err(e) => row.error = Some(e.to_string()),
            Ok(studies) => {
                row.studies = studies.len();
                for study in studies {
                    match (source, spool) {
                        (PullSource::Get(_), Some(spool)) => {
                            record(get_study(pacs, ae, &study, spool), "C-GET")
                        }
                        _ => record(move_study(pacs, ae, &study.uid, ae), "C-MOVE"),
                    }
                }
            }
        },
        (PullSource::Web(_), None) => row.error = Some("no spool to retrieve into".into()),
    }
}
