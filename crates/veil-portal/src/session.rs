//! Sessions, kept in this process's memory only (a restart signs everyone out): a random
//! 256-bit id in a cookie, who is signed in, and the session's CSRF token. Signing in always
//! creates a new session and ends the old one, so an id planted before sign-in never becomes a
//! signed-in session (no fixation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session ends after this long without a request…
const IDLE: Duration = Duration::from_secs(15 * 60);
/// …and this long after sign-in in any case.
const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Past this many sessions, expired ones are swept before a new one is added.
const SWEEP_AT: usize = 50_000;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Not signed in (the session carries only the CSRF token of the sign-in forms).
    Anonymous,
    /// A patient, as the access code named them. The identifiers stay in memory only.
    Patient {
        patient_id: String,
        issuer: String,
        short_ref: String,
    },
    Officer {
        name: String,
    },
}

/// A live session as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub who: Who,
    pub csrf: String,
}

struct Entry {
    who: Who,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) > IDLE || now.duration_since(self.created) > LIFETIME
    }
}

/// The table of live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Entry>>,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    /// A new session for `who`, with a new id and CSRF token.
    pub fn create(&self, who: Who) -> Session {
        let now = Instant::now();
        let (id, csrf) = (random_hex(), random_hex());
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| !e.expired(now));
        }
        // Still full: someone is opening sign-in forms by the thousand. Anonymous sessions hold
        // only a form's token, so they go (a person mid-sign-in reloads the form); signed-in
        // sessions are never pushed out.
        if map.len() >= SWEEP_AT {
            map.retain(|_, e| e.who != Who::Anonymous);
        }
        map.insert(
            id.clone(),
            Entry {
                who: who.clone(),
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        Session { id, who, csrf }
    }

    /// The live session with this id (its idle clock restarts), or `None`.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.get_mut(id)?;
        if entry.expired(now) {
            map.remove(id);
            return None;
        }
        entry.last_seen = now;
        Some(Session {
            id: id.to_string(),
            who: entry.who.clone(),
            csrf: entry.csrf.clone(),
        })
    }

    /// Ends a session.
    pub fn end(&self, id: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_distinct_and_end() {
        let s = Sessions::default();
        let a = s.create(Who::Anonymous);
        let b = s.create(Who::Officer { name: "o".into() });
        assert_ne!(a.id, b.id);
        assert_ne!(a.csrf, b.csrf);
        assert_eq!(a.id.len(), 64);
        assert_eq!(s.get(&b.id).unwrap().who, Who::Officer { name: "o".into() });
        s.end(&b.id);
        assert!(s.get(&b.id).is_none());
        assert!(s.get("unknown").is_none());
    }

    #[test]
    fn a_flood_of_sign_in_forms_pushes_out_anonymous_sessions_only() {
        let s = Sessions::default();
        let officer = s.create(Who::Officer { name: "o".into() });
        for _ in 0..SWEEP_AT {
            s.create(Who::Anonymous);
        }
        let last = s.create(Who::Anonymous);
        assert!(s.get(&officer.id).is_some(), "a signed-in session stays");
        assert!(s.get(&last.id).is_some());
        assert!(s.map.lock().unwrap().len() <= 3, "the flood is gone");
    }
}
