//! Sign-in limits kept in memory: per client address, a few failures in a window and the
//! address is locked out for a while; across all addresses, a ceiling on failed code sign-ins
//! per minute, so guessing codes from many addresses gains little. Officer accounts are also
//! locked in the store after repeated failures ([`crate::access`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address within [`WINDOW`] before it is locked out for [`LOCKOUT`].
const PER_ADDRESS: u32 = 5;
const WINDOW: Duration = Duration::from_secs(15 * 60);
const LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Failed sign-ins per minute from all addresses together before every sign-in waits.
const GLOBAL_PER_MINUTE: u32 = 60;

#[derive(Default)]
struct Address {
    failures: u32,
    window_start: Option<Instant>,
    locked_until: Option<Instant>,
}

#[derive(Default)]
struct State {
    by_address: HashMap<IpAddr, Address>,
    global_failures: u32,
    global_window: Option<Instant>,
}

/// Failed sign-in counts.
#[derive(Default)]
pub struct SignInLimits {
    state: Mutex<State>,
}

impl SignInLimits {
    /// May `addr` try to sign in now?
    pub fn allowed(&self, addr: IpAddr) -> bool {
        let now = Instant::now();
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let global_open = match s.global_window {
            Some(start) if now.duration_since(start) < Duration::from_secs(60) => {
                s.global_failures < GLOBAL_PER_MINUTE
            }
            _ => true,
        };
        let address_open = s
            .by_address
            .get(&addr)
            .and_then(|a| a.locked_until)
            .is_none_or(|until| now >= until);
        global_open && address_open
    }

    /// Counts a failed sign-in from `addr`.
    pub fn failed(&self, addr: IpAddr) {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.global_window {
            Some(start) if now.duration_since(start) < Duration::from_secs(60) => {
                s.global_failures += 1
            }
            _ => {
                s.global_window = Some(now);
                s.global_failures = 1;
            }
        }
        let a = s.by_address.entry(addr).or_default();
        if a.window_start
            .is_none_or(|start| now.duration_since(start) > WINDOW)
        {
            a.window_start = Some(now);
            a.failures = 0;
        }
        a.failures += 1;
        if a.failures >= PER_ADDRESS {
            a.locked_until = Some(now + LOCKOUT);
            a.failures = 0;
            a.window_start = None;
        }
    }

    /// A successful sign-in clears the address's count (not a lockout in force).
    pub fn succeeded(&self, addr: IpAddr) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = s.by_address.get_mut(&addr) {
            a.failures = 0;
            a.window_start = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_the_address_out_and_not_others() {
        let l = SignInLimits::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..PER_ADDRESS - 1 {
            l.failed(a);
            assert!(l.allowed(a));
        }
        l.failed(a);
        assert!(!l.allowed(a));
        assert!(l.allowed(b));
    }
}
