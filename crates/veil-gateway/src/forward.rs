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

use crate::scu::{self, Destination, SendError};
use crate::spool::Spool;
use crate::Stop;

/// What the gateway does to an instance before it leaves: de-identify and verify it.
pub trait Deidentify: Send + Sync {
    /// The instance to send (Part 10), or why it is held back (reason code, sentence).
    fn deidentify(&self, part10: &[u8]) -> Result<Vec<u8>, (String, String)>;
}

/// Counts of one pass over the spool.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Drained {
    pub delivered: usize,
    pub held_back: usize,
    /// Still in the spool after this pass.
    pub waiting: usize,
    /// Why the destination could not take instances (they stay in the spool).
    pub failing: Option<String>,
}

/// Drains a spool to one destination.
pub struct Forwarder {
    pub spool: Arc<Spool>,
    pub deid: Box<dyn Deidentify>,
    pub destination: Destination,
    /// The gateway's AE title, used as the calling title.
    pub calling_ae: String,
}

impl Forwarder {
    /// One pass: every spooled instance, in name order, until the destination fails.
    pub fn drain_once(&self) -> Drained {
        let mut d = Drained::default();
        let list = match self.spool.list() {
            Ok(l) => l,
            Err(e) => {
                d.failing = Some(e.to_string());
                return d;
            }
        };
        for (i, path) in list.iter().enumerate() {
            let original = match self.spool.read(path) {
                Ok(b) => b,
                Err(e) => {
                    self.hold(path, "unreadable_spool_entry", &e.to_string(), &mut d);
                    continue;
                }
            };
            let out = match self.deid.deidentify(&original) {
                Ok(out) => out,
                Err((reason, detail)) => {
                    self.hold(path, &reason, &detail, &mut d);
                    continue;
                }
            };
            match scu::store(&self.destination, &self.calling_ae, &out) {
                Ok(()) => match self.spool.remove(path) {
                    Ok(()) => d.delivered += 1,
                    Err(e) => tracing::warn!("{e}"),
                },
                Err(SendError::Instance(why)) => self.hold(path, "cannot_send", &why, &mut d),
                Err(e) => {
                    d.failing = Some(e.to_string());
                    d.waiting = list.len() - i;
                    return d;
                }
            }
        }
        d
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
        if d.delivered == 0 && d.held_back == 0 && s.failing == d.failing {
            return;
        }
        s.delivered += d.delivered as u64;
        s.held_back += d.held_back as u64;
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
