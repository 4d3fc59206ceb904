//! The admin password: argon2id, with parameters sized for a router with 128 MB of RAM.
//!
//! One hash takes [`MEMORY_KIB`] KiB and 25-40 ms on the test machine (a router's slower core:
//! several times that; BENCHMARKS.md): enough to make guessing offline slow, small enough that a
//! login does not push a 128 MB router into swap. The stored form is the PHC string (algorithm,
//! parameters, salt and hash), so the parameters can change later without breaking stored
//! passwords.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::RngCore;

/// Memory per hash (19 MiB: OWASP's argon2id minimum, a seventh of a 128 MB router's RAM).
pub const MEMORY_KIB: u32 = 19 * 1024;
/// Passes over that memory.
pub const ITERATIONS: u32 = 2;
/// One lane: a router has one or two slow cores, and logins are rare.
pub const LANES: u32 = 1;
/// Shorter passwords are refused.
pub const MIN_LEN: usize = 10;
/// Longer ones too (the hash input is bounded; nobody types more).
pub const MAX_LEN: usize = 256;

/// Why a password or a stored hash was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("the password must have at least {MIN_LEN} characters")]
    TooShort,
    #[error("the password must have at most {MAX_LEN} characters")]
    TooLong,
    #[error("the stored password hash is not an argon2id PHC string: {0}")]
    BadHash(String),
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's bounds: `new` cannot fail for them.
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the rules a new password must meet.
pub fn acceptable(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if n > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// The PHC string of `password` with a fresh 16-byte salt from `rng`.
pub fn hash(password: &str, rng: &mut impl RngCore) -> Result<String, PasswordError> {
    acceptable(password)?;
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::BadHash(e.to_string()))
}

/// Whether `password` matches the stored PHC string (argon2id only; the parameters are the
/// stored ones). A malformed stored hash is an error, not a mismatch.
pub fn verify(stored: &str, password: &str) -> Result<bool, PasswordError> {
    let parsed = PasswordHash::new(stored).map_err(|e| PasswordError::BadHash(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(PasswordError::BadHash(format!(
            "algorithm {}",
            parsed.algorithm
        )));
    }
    if password.len() > MAX_LEN * 4 {
        return Ok(false);
    }
    Ok(argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn hash_verify_and_refusals() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let t = std::time::Instant::now();
        let h = hash("correct horse battery", &mut rng).expect("hash");
        let took = t.elapsed();
        eprintln!("one argon2id hash (m={MEMORY_KIB} KiB, t={ITERATIONS}, p={LANES}): {took:?}");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(verify(&h, "correct horse battery"), Ok(true));
        assert_eq!(verify(&h, "correct horse batterx"), Ok(false));
        // A second hash of the same password has another salt.
        let h2 = hash("correct horse battery", &mut rng).expect("hash");
        assert_ne!(h, h2);
        assert_eq!(hash("short", &mut rng), Err(PasswordError::TooShort));
        assert_eq!(
            hash(&"x".repeat(MAX_LEN + 1), &mut rng),
            Err(PasswordError::TooLong)
        );
        assert!(matches!(
            verify("not a hash", "whatever12"),
            Err(PasswordError::BadHash(_))
        ));
        assert!(matches!(
            verify("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA", "whatever12"),
            Err(PasswordError::BadHash(_))
        ));
    }
}
