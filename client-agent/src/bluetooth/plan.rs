//! When to bring a HomeSpot's Bluetooth PAN up and when to take it down, sans-IO: time is
//! passed in, the I/O ([`super::pan`]) reports back.
//!
//! Up: when something wants the low-power link (the user asked for it, or the idle rule would
//! move there) and the HomeSpot has a Bluetooth link with an address but none of ours is
//! usable. One attempt at a time; after a failure the idle rule waits [`RETRY`] before it
//! tries again (a user request tries at once). Down: only a PAN this agent brought up, after
//! it carried no traffic for `idle_disconnect` while another link did.

use std::time::{Duration, Instant};

/// After a failed attempt, the idle rule waits this long before trying again.
pub const RETRY: Duration = Duration::from_secs(60);

/// Who wants the Bluetooth link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The user asked to switch to it.
    User,
    /// The idle rule would move there.
    Idle,
}

impl Why {
    /// Its name in events.
    pub fn name(self) -> &'static str {
        match self {
            Why::User => "user",
            Why::Idle => "idle",
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Find, pair if needed and connect the PAN to this Bluetooth address.
    Connect {
        /// The HomeSpot's adapter address (`AA:BB:CC:DD:EE:FF`).
        addr: String,
        /// Why.
        why: Why,
    },
    /// Disconnect the PAN on this interface: idle this long on another link.
    Disconnect {
        /// The HomeSpot's adapter address.
        addr: String,
        /// The bnep interface.
        iface: String,
        /// How long it carried nothing.
        idle: Duration,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Down,
    Connecting { addr: String, why: Why },
    Up { addr: String, iface: String },
}

/// What the manager knows at one tick.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Now.
    pub now: Instant,
    /// The HomeSpot's Bluetooth address from its verified advert (none: not at a HomeSpot,
    /// or it has no Bluetooth link).
    pub addr: Option<&'a str>,
    /// One of our links is a usable Bluetooth link of the HomeSpot.
    pub bt_usable: bool,
    /// The link in use is that Bluetooth link.
    pub on_bt: bool,
    /// Something wants the Bluetooth link.
    pub want: Option<Why>,
}

/// The plan.
#[derive(Debug)]
pub struct Plan {
    idle_disconnect: Duration,
    state: State,
    /// Since when the PAN we brought up has not been the link in use.
    off_since: Option<Instant>,
    retry_at: Option<Instant>,
}

/// A Bluetooth device address as BlueZ writes it: six hex pairs, colons between.
pub fn is_address(s: &str) -> bool {
    s.len() == 17
        && s.split(':').count() == 6
        && s.split(':')
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A Bluetooth address from an advert's `l2_id`: six bytes (what homespotd sends once it has
/// read its adapter's address from BlueZ), or the text form.
pub fn address_of(l2_id: &[u8]) -> Option<String> {
    if let [a, b, c, d, e, f] = l2_id {
        return Some(format!("{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{f:02X}"));
    }
    std::str::from_utf8(l2_id)
        .ok()
        .filter(|s| is_address(s))
        .map(str::to_string)
}

impl Plan {
    /// A plan that disconnects after `idle_disconnect`.
    pub fn new(idle_disconnect: Duration) -> Plan {
        Plan {
            idle_disconnect,
            state: State::Down,
            off_since: None,
            retry_at: None,
        }
    }

    /// The interface of the PAN we brought up, if it is up.
    pub fn iface(&self) -> Option<&str> {
        match &self.state {
            State::Up { iface, .. } => Some(iface),
            _ => None,
        }
    }

    /// An attempt is running.
    pub fn connecting(&self) -> bool {
        matches!(self.state, State::Connecting { .. })
    }

    /// What to do now, if anything.
    pub fn tick(&mut self, i: Inputs<'_>) -> Option<Action> {
        match &self.state {
            State::Connecting { .. } => None,
            State::Down => {
                let addr = i.addr.filter(|a| is_address(a))?;
                let why = i.want?;
                if i.bt_usable {
                    return None;
                }
                if why == Why::Idle && self.retry_at.is_some_and(|t| i.now < t) {
                    return None;
                }
                self.state = State::Connecting {
                    addr: addr.to_string(),
                    why,
                };
                Some(Action::Connect {
                    addr: addr.to_string(),
                    why,
                })
            }
            State::Up { addr, iface } => {
                if i.on_bt || i.want.is_some() {
                    self.off_since = None;
                    return None;
                }
                let since = *self.off_since.get_or_insert(i.now);
                let idle = i.now.duration_since(since);
                if idle < self.idle_disconnect {
                    return None;
                }
                let a = Action::Disconnect {
                    addr: addr.clone(),
                    iface: iface.clone(),
                    idle,
                };
                self.state = State::Down;
                self.off_since = None;
                Some(a)
            }
        }
    }

    /// The PAN is up on `iface`.
    pub fn connected(&mut self, iface: &str) {
        if let State::Connecting { addr, .. } = &self.state {
            self.state = State::Up {
                addr: addr.clone(),
                iface: iface.to_string(),
            };
            self.off_since = None;
            self.retry_at = None;
        }
    }

    /// The attempt failed at `now`: the idle rule waits [`RETRY`].
    pub fn failed(&mut self, now: Instant) {
        self.state = State::Down;
        self.retry_at = Some(now + RETRY);
    }

    /// The PAN's interface went away (the HomeSpot or BlueZ ended it).
    pub fn gone(&mut self) {
        if matches!(self.state, State::Up { .. }) {
            self.state = State::Down;
            self.off_since = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "AA:BB:CC:DD:EE:01";

    fn at<'a>(now: Instant, want: Option<Why>, bt_usable: bool, on_bt: bool) -> Inputs<'a> {
        Inputs {
            now,
            addr: Some(A),
            bt_usable,
            on_bt,
            want,
        }
    }

    #[test]
    fn up_on_demand_down_when_idle_on_another_link() {
        let t = Instant::now();
        let mut p = Plan::new(Duration::from_secs(3));
        // Nothing wants it: nothing happens.
        assert_eq!(p.tick(at(t, None, false, false)), None);
        // The user wants it.
        assert_eq!(
            p.tick(at(t, Some(Why::User), false, false)),
            Some(Action::Connect {
                addr: A.into(),
                why: Why::User
            })
        );
        // One attempt at a time.
        assert_eq!(p.tick(at(t, Some(Why::User), false, false)), None);
        assert!(p.connecting());
        p.connected("bnep0");
        assert_eq!(p.iface(), Some("bnep0"));
        // In use: stays.
        let s = t + Duration::from_secs(10);
        assert_eq!(p.tick(at(s, None, true, true)), None);
        // Another link carries the traffic: after 3 s, down.
        assert_eq!(p.tick(at(s, None, true, false)), None);
        assert_eq!(
            p.tick(at(s + Duration::from_millis(2900), None, true, false)),
            None
        );
        // Back in use meanwhile resets the clock.
        assert_eq!(
            p.tick(at(s + Duration::from_secs(3), None, true, true)),
            None
        );
        let s2 = s + Duration::from_secs(4);
        assert_eq!(p.tick(at(s2, None, true, false)), None);
        assert_eq!(
            p.tick(at(s2 + Duration::from_secs(3), None, true, false)),
            Some(Action::Disconnect {
                addr: A.into(),
                iface: "bnep0".into(),
                idle: Duration::from_secs(3)
            })
        );
        assert_eq!(p.iface(), None);
    }

    #[test]
    fn never_without_an_address_or_when_a_bluetooth_link_is_usable() {
        let t = Instant::now();
        let mut p = Plan::new(Duration::from_secs(3));
        let mut i = at(t, Some(Why::User), false, false);
        i.addr = None;
        assert_eq!(p.tick(i), None);
        i.addr = Some("bt-home");
        assert_eq!(p.tick(i), None, "not a Bluetooth address");
        assert_eq!(p.tick(at(t, Some(Why::Idle), true, false)), None);
        // A PAN that someone else brought up is never taken down by us.
        assert_eq!(
            p.tick(at(t + Duration::from_secs(100), None, true, false)),
            None
        );
    }

    #[test]
    fn failures_back_off_for_the_idle_rule_but_not_for_the_user() {
        let t = Instant::now();
        let mut p = Plan::new(Duration::from_secs(3));
        assert!(p.tick(at(t, Some(Why::Idle), false, false)).is_some());
        p.failed(t);
        assert_eq!(
            p.tick(at(
                t + Duration::from_secs(1),
                Some(Why::Idle),
                false,
                false
            )),
            None
        );
        assert!(p
            .tick(at(
                t + Duration::from_secs(2),
                Some(Why::User),
                false,
                false
            ))
            .is_some());
        p.failed(t + Duration::from_secs(2));
        assert!(p
            .tick(at(
                t + Duration::from_secs(63),
                Some(Why::Idle),
                false,
                false
            ))
            .is_some());
        // The PAN went away by itself: down, and up again on demand.
        p.connected("bnep1");
        p.gone();
        assert!(p
            .tick(at(
                t + Duration::from_secs(64),
                Some(Why::User),
                false,
                false
            ))
            .is_some());
    }

    #[test]
    fn addresses() {
        assert!(is_address("00:AA:01:00:00:23"));
        assert!(!is_address("00:AA:01:00:00"));
        assert!(!is_address("00:AA:01:00:00:2G"));
        assert!(!is_address("home-bt"));
        assert_eq!(
            address_of(&[0, 0xaa, 1, 0, 0, 0x23]).as_deref(),
            Some("00:AA:01:00:00:23")
        );
        assert_eq!(
            address_of(b"00:AA:01:00:00:23").as_deref(),
            Some("00:AA:01:00:00:23")
        );
        assert_eq!(address_of(b"home-bt"), None);
    }
}
