//! Draining the spool: each instance de-identified (by the application layer's pipeline, behind
//! [`Deidentify`]) and stored at the destination, then taken off the spool.
//!
//! Delivery is at least once with identical bytes: an instance leaves the spool only after the
//! destination confirmed it, so a crash in between sends it again — the same object (same UIDs,
//! same data set, since de-identification is keyed and deterministic), which a PACS stores once.
//! While the destination is down the spool keeps everything and the drain retries with backoff.
//! An instance the pipeline holds back goes to the spool's `held/`, sealed, with its reason.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Target;
use crate::scu::{self, SendError};

/// At most this many instances, or about this many bytes of them, per association.
const BATCH_INSTANCES: usize = 64;
const BATCH_BYTES: usize = 256 << 20;
use crate::spool::Spool;
use crate::Stop;

/// What the gateway does to an instance before it leaves: de-identify and verify it.
pub trait Deidentify: Send + Sync {
    /// The instance to send, why it is held back, or the series it must wait for.
    fn deidentify(&self, part10: &[u8]) -> Prepared;
    /// A whole series (members that waited), outcomes in member order (none is
    /// [`Prepared::Series`] again).
    fn deidentify_series(&self, members: &[Vec<u8>]) -> Vec<Prepared>;
}

/// One instance's de-identification.
pub enum Prepared {
    /// The instance to send (Part 10), or why it is held back (reason code, sentence).
    Ready(Result<Vec<u8>, (String, String)>),
    /// A series stage (defacing) needs its whole series, named by this key: it waits until
    /// the series has been quiet for the route's quiet period.
    Series(String),
    /// Not for this route's recipient (the consent gate's reason code): the instance leaves
    /// the spool unsent. Nothing was wrong with it, so it is not held back.
    Excluded(String),
    /// Cannot be decided now (the consent registry or ledger is unreachable): the instance
    /// stays in the spool and is tried again, and the drain reports why.
    Later(String),
}

/// Counts of one pass over the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub delivered: usize,
    pub held_back: usize,
    /// Left unsent by the consent gate.
    pub excluded: usize,
    /// Still in the spool after this pass.
    pub waiting: usize,
    /// Why the destination could not take instances (they stay in the spool).
    pub failing: Option<String>,
}

/// Drains a spool to one destination.
pub struct Forwarder {
    /// The lane it drains.
    pub spool: Arc<Spool>,
    /// The route's de-identification (shared by the route's lanes).
    pub deid: Arc<dyn Deidentify>,
    pub destination: Target,
    /// The gateway's AE title, used as the calling title.
    pub calling_ae: String,
    /// Associations open to the destination at once.
    pub connections: usize,
    /// A series is complete when none of its instances arrived for this long.
    pub series_quiet: Duration,
    /// Spooled instances waiting for their series: spool path → series key.
    pub waiting: std::sync::Mutex<std::collections::BTreeMap<std::path::PathBuf, String>>,
}

impl Forwarder {
    /// One pass: what was received is de-identified into `outgoing/` (instances on their own
    /// at once, series once quiet), then `outgoing/` is delivered with `connections` workers in
    /// batches (one association each), until the destination fails. A PACS stores instances one
    /// by one with its own latency, so one association at a time would leave it mostly waiting.
    /// De-identifying before sending means a series is planned once, whole: a destination that
    /// fails halfway through it never makes the rest be planned again without the part sent.
    pub fn drain_once(&self) -> Drained {
        let mut d = Drained::default();
        self.prepare_received(&mut d);
        self.prepare_quiet_series(&mut d);
        let list = match self.spool.list_outgoing() {
            Ok(l) => l,
            Err(e) => {
                d.failing = Some(e.to_string());
                return d;
            }
        };
        let results = self.in_parallel(&list, |mine| self.deliver(mine));
        for r in results {
            d.delivered += r.delivered;
            d.held_back += r.held_back;
            d.excluded += r.excluded;
            d.failing = d.failing.take().or(r.failing);
        }
        if d.failing.is_some() {
            let count = |l: Result<Vec<_>, _>| l.map(|l: Vec<_>| l.len()).unwrap_or(0);
            d.waiting = count(self.spool.list()) + count(self.spool.list_outgoing());
        }
        d
    }

    /// Runs `work` on `connections` interleaved shares of `list`, in parallel.
    fn in_parallel(
        &self,
        list: &[std::path::PathBuf],
        work: impl Fn(&[std::path::PathBuf]) -> Drained + Sync,
    ) -> Vec<Drained> {
        let workers = self.connections.max(1).min(list.len().max(1));
        let work = &work;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let mine: Vec<std::path::PathBuf> =
                        list.iter().skip(w).step_by(workers).cloned().collect();
                    scope.spawn(move || work(&mine))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    /// Received instances on their own are de-identified into `outgoing/`; those a series stage
    /// wants whole join their series' wait.
    fn prepare_received(&self, d: &mut Drained) {
        let list: Vec<std::path::PathBuf> = match self.spool.list() {
            Ok(l) => {
                let waiting = self.waiting.lock().unwrap();
                l.into_iter().filter(|p| !waiting.contains_key(p)).collect()
            }
            Err(e) => {
                d.failing = Some(e.to_string());
                return;
            }
        };
        for r in self.in_parallel(&list, |mine| {
            let mut d = Drained::default();
            for path in mine {
                self.prepare_one(path, &mut d);
            }
            d
        }) {
            d.held_back += r.held_back;
            d.excluded += r.excluded;
            d.failing = d.failing.take().or(r.failing);
        }
    }

    fn prepare_one(&self, path: &std::path::Path, d: &mut Drained) {
        // Done before a crash took the original away: nothing more to do.
        if self.spool.is_done(path) {
            let _ = self.spool.remove(path);
            return;
        }
        let original = match self.spool.read(path) {
            Ok(b) => b,
            Err(e) => return self.hold(path, "unreadable_spool_entry", &e.to_string(), d),
        };
        match self.deid.deidentify(&original) {
            Prepared::Ready(Ok(out)) => self.move_out(path, &out),
            Prepared::Ready(Err((reason, detail))) => self.hold(path, &reason, &detail, d),
            Prepared::Series(key) if self.spool.series_done(&key) => self.hold_late(path, d),
            Prepared::Series(key) => {
                self.waiting.lock().unwrap().insert(path.to_path_buf(), key);
            }
            Prepared::Excluded(_) => self.exclude(path, d),
            Prepared::Later(why) => d.failing = Some(why),
        }
    }

    /// An instance the consent gate keeps from this route's recipient leaves the spool unsent.
    fn exclude(&self, path: &std::path::Path, d: &mut Drained) {
        match self.spool.remove(path) {
            Ok(()) => d.excluded += 1,
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// A member of a series that was already planned and sent: alone it cannot be defaced.
    fn hold_late(&self, path: &std::path::Path, d: &mut Drained) {
        self.hold(
            path,
            "late_series_member",
            "this instance arrived after its series was complete (quiet) and defaced; alone it cannot be checked for a face, so it was held back; raise series_quiet_seconds if senders pause within a series",
            d,
        )
    }

    /// The de-identified form goes to `outgoing/`, then the original leaves `incoming/`.
    fn move_out(&self, original: &std::path::Path, out: &[u8]) {
        match self.spool.put_outgoing(original, out) {
            Ok(_) => {
                let _ = self.spool.remove(original);
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Series whose newest instance arrived at least `series_quiet` ago: planned whole (one
    /// volume for defacing) into `outgoing/`, then recorded as done.
    fn prepare_quiet_series(&self, d: &mut Drained) {
        let mut groups: std::collections::BTreeMap<String, Vec<std::path::PathBuf>> =
            Default::default();
        {
            let mut waiting = self.waiting.lock().unwrap();
            waiting.retain(|p, _| p.exists());
            for (p, key) in waiting.iter() {
                groups.entry(key.clone()).or_default().push(p.clone());
            }
        }
        let now = std::time::SystemTime::now();
        for (key, members) in groups {
            let newest = members
                .iter()
                .filter_map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
                .max()
                .unwrap_or(now);
            if now.duration_since(newest).unwrap_or_default() < self.series_quiet {
                continue;
            }
            if self.spool.series_done(&key) {
                members.iter().for_each(|p| self.hold_late(p, d));
                continue;
            }
            let (mut paths, mut originals) = (Vec::new(), Vec::new());
            for p in &members {
                match self.spool.read(p) {
                    Ok(b) => {
                        paths.push(p.clone());
                        originals.push(b);
                    }
                    Err(e) => self.hold(p, "unreadable_spool_entry", &e.to_string(), d),
                }
            }
            let outcomes = self.deid.deidentify_series(&originals);
            drop(originals);
            let mut out = Vec::new();
            for (p, outcome) in paths.into_iter().zip(outcomes) {
                match outcome {
                    Prepared::Ready(Ok(bytes)) => match self.spool.put_outgoing(&p, &bytes) {
                        Ok(_) => out.push(p),
                        Err(e) => tracing::warn!("{e}"),
                    },
                    Prepared::Ready(Err((reason, detail))) => self.hold(&p, &reason, &detail, d),
                    Prepared::Excluded(_) => self.exclude(&p, d),
                    // Stays in the spool, without its series: once the registry or ledger is
                    // back, it is held back as a late member rather than sent unrecorded.
                    Prepared::Later(why) => d.failing = Some(why),
                    Prepared::Series(_) => self.hold(
                        &p,
                        "series_stage",
                        "the series stage did not take this instance",
                        d,
                    ),
                }
            }
            // Outputs first, then the mark, then the originals: a crash anywhere in between
            // leaves originals whose outputs exist (removed at the next pass), never a part of
            // the series planned again alone.
            if let Err(e) = self.spool.mark_series_done(&key) {
                tracing::warn!("{e}");
            }
            for p in out {
                let _ = self.spool.remove(&p);
            }
        }
    }

    /// One worker's share of `outgoing/`: read in batches, sent, removed once delivered.
    fn deliver(&self, list: &[std::path::PathBuf]) -> Drained {
        let mut d = Drained::default();
        for chunk in list.chunks(BATCH_INSTANCES) {
            let mut ready = Vec::new();
            let mut bytes = 0usize;
            for path in chunk {
                match self.spool.read(path) {
                    Ok(b) => {
                        bytes += b.len();
                        ready.push((path.clone(), b));
                    }
                    Err(e) => self.hold(path, "unreadable_spool_entry", &e.to_string(), &mut d),
                }
                // A batch of large instances is sent before more are read.
                if bytes >= BATCH_BYTES {
                    if let Err(why) = self.send_batch(&ready, &mut d) {
                        d.failing = Some(why);
                        return d;
                    }
                    ready.clear();
                    bytes = 0;
                }
            }
            if let Err(why) = self.send_batch(&ready, &mut d) {
                d.failing = Some(why);
                return d;
            }
        }
        d
    }

    /// Sends a batch (one association, or one STOW-RS request); each delivered instance
    /// leaves the spool. `Err`: the destination is unavailable (what was not delivered stays).
    fn send_batch(
        &self,
        ready: &[(std::path::PathBuf, Vec<u8>)],
        d: &mut Drained,
    ) -> Result<(), String> {
        let mut outgoing = Vec::new();
        for (path, out) in ready {
            match scu::Outgoing::of(out) {
                Ok(o) => outgoing.push((path, out, o)),
                Err(e) => self.hold(path, "cannot_send", &e.to_string(), d),
            }
        }
        if outgoing.is_empty() {
            return Ok(());
        }
        let results: Vec<Result<(), SendError>> = match &self.destination {
            Target::Dimse(dest) => {
                let only: Vec<&scu::Outgoing<'_>> = outgoing.iter().map(|(_, _, o)| o).collect();
                let mut sender =
                    scu::Sender::open(dest, &self.calling_ae, &only).map_err(|e| e.to_string())?;
                let mut results = Vec::new();
                for o in only {
                    let r = sender.store(o);
                    let unavailable = matches!(r, Err(SendError::Unavailable { .. }));
                    results.push(r);
                    if unavailable {
                        break;
                    }
                }
                sender.close();
                results
            }
            Target::Stow(stow) => {
                let batch: Vec<(&str, &[u8])> = outgoing
                    .iter()
                    .map(|(_, out, o)| (o.sop_instance(), out.as_slice()))
                    .collect();
                stow.store(&batch).map_err(|e| e.to_string())?
            }
        };
        for ((path, _, _), r) in outgoing.iter().zip(results) {
            match r {
                Ok(()) => match self.spool.remove(path) {
                    Ok(()) => d.delivered += 1,
                    Err(e) => tracing::warn!("{e}"),
                },
                Err(SendError::Refused { status, .. }) => self.hold(
                    path,
                    "destination_refused",
                    &format!("the destination refused the instance with status {status:#06x}"),
                    d,
                ),
                Err(e @ SendError::NotAccepted { .. }) => {
                    self.hold(path, "destination_refused", &e.to_string(), d)
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    fn hold(&self, path: &std::path::Path, reason: &str, detail: &str, d: &mut Drained) {
        match self.spool.hold(path, reason, detail) {
            Ok(_) => d.held_back += 1,
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Adds a pass to the recorded state (`veil gateway status` reads it).
    fn record(&self, d: &Drained) {
        let mut s = self.spool.status();
        if d.delivered == 0 && d.held_back == 0 && d.excluded == 0 && s.failing == d.failing {
            return;
        }
        s.delivered += d.delivered as u64;
        s.held_back += d.held_back as u64;
        s.excluded += d.excluded as u64;
        if s.failing.is_none() && d.failing.is_some() {
            s.failing_since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|t| t.as_secs());
        }
        if d.failing.is_none() {
            s.failing_since = None;
        }
        s.failing = d.failing.clone();
        if let Err(e) = self.spool.set_status(&s) {
            tracing::warn!("{e}");
        }
    }

    /// Drains until `stop`: every `poll` while the destination takes instances, backing off
    /// (doubling up to `max_backoff`) while it fails.
    pub fn run(&self, stop: &Stop, poll: Duration, max_backoff: Duration) {
        let mut wait = poll;
        while !stop.stopped() {
            let d = self.drain_once();
            self.record(&d);
            match &d.failing {
                Some(why) => {
                    tracing::warn!("{} instance(s) waiting: {why}", d.waiting);
                    wait = (wait * 2).min(max_backoff);
                }
                None => wait = poll,
            }
            let mut slept = Duration::ZERO;
            while slept < wait && !stop.stopped() {
                std::thread::sleep(Duration::from_millis(50));
                slept += Duration::from_millis(50);
            }
        }
    }
}
