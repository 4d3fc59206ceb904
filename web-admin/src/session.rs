//! Logged-in sessions: a random 128-bit id (the cookie) and a random 128-bit CSRF token each,
//! an idle timeout, and a bounded table. Sans-IO: the caller passes `now` and the RNG.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use subtle::ConstantTimeEq;

/// How many sessions exist at once; a new login beyond this ends the least recently used.
pub const MAX_SESSIONS: usize = 16;
/// A session unused this long is over.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token every state-changing request must carry (hex).
    pub csrf: String,
    /// When it was last used.
    pub last_used: Instant,
}

/// The table of sessions, by id (hex).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
}

fn random_hex(rng: &mut impl RngCore) -> String {
    let mut b = [0u8; 16];
    rng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sessions {
    /// A new session at `now`: its id and CSRF token.
    pub fn create(&mut self, now: Instant, rng: &mut impl RngCore) -> (String, String) {
        self.expire(now);
        if self.by_id.len() >= MAX_SESSIONS {
            if let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| id.clone())
            {
                self.by_id.remove(&oldest);
            }
        }
        let (id, csrf) = (random_hex(rng), random_hex(rng));
        self.by_id.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                last_used: now,
            },
        );
        (id, csrf)
    }

    /// The session with this id if it is alive at `now` (its idle time starts over).
    pub fn get(&mut self, id: &str, now: Instant) -> Option<&Session> {
        let alive = self
            .by_id
            .get(id)
            .is_some_and(|s| now.saturating_duration_since(s.last_used) < IDLE_TIMEOUT);
        if !alive {
            self.by_id.remove(id);
            return None;
        }
        let s = self.by_id.get_mut(id)?;
        s.last_used = now;
        Some(s)
    }

    /// Whether `token` is the session's CSRF token (compared in constant time).
    pub fn csrf_ok(&mut self, id: &str, token: &str, now: Instant) -> bool {
        self.get(id, now)
            .is_some_and(|s| bool::from(s.csrf.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Logs out.
    pub fn remove(&mut self, id: &str) {
        self.by_id.remove(id);
    }

    /// Puts back a session taken out with its id (after [`Sessions::clear`]).
    pub fn restore(&mut self, id: String, s: Session) {
        self.by_id.insert(id, s);
    }

    /// Ends every session (after a password change).
    pub fn clear(&mut self) {
        self.by_id.clear();
    }

    /// Drops sessions idle for [`IDLE_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        self.by_id
            .retain(|_, s| now.saturating_duration_since(s.last_used) < IDLE_TIMEOUT);
    }

    /// How many are alive.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// None alive.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn sessions_are_random_bounded_and_time_out() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut s = Sessions::default();
        let (id, csrf) = s.create(t0, &mut rng);
        assert_eq!((id.len(), csrf.len()), (32, 32), "128 bits each, hex");
        assert_ne!(id, csrf);
        assert!(s.get(&id, t0 + Duration::from_secs(60)).is_some());
        assert!(s.csrf_ok(&id, &csrf, t0 + Duration::from_secs(61)));
        assert!(!s.csrf_ok(&id, "00", t0 + Duration::from_secs(62)));
        assert!(!s.csrf_ok("nope", &csrf, t0));
        // Used at 62 s: alive until 62 s + 30 min.
        assert!(s
            .get(
                &id,
                t0 + Duration::from_secs(62) + IDLE_TIMEOUT - Duration::from_secs(1)
            )
            .is_some());
        assert!(s.get(&id, t0 + Duration::from_secs(3 * 3600)).is_none());
        assert!(s.is_empty());
        // Bounded: the least recently used goes.
        let first = s.create(t0, &mut rng).0;
        for i in 1..=MAX_SESSIONS {
            s.create(t0 + Duration::from_secs(i as u64), &mut rng);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.get(&first, t0 + Duration::from_secs(100)).is_none());
        let (id, _) = s.create(t0 + Duration::from_secs(200), &mut rng);
        s.remove(&id);
        assert!(s.get(&id, t0 + Duration::from_secs(201)).is_none());
    }
}
