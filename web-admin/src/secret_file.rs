//! The panel's two secrets on disk, both root-only (mode 0600), both written atomically
//! (temporary file, fsync, rename): the password hash, and the one-time setup code that lets
//! the first visitor set the first password when none is set.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::RngCore;
use subtle::ConstantTimeEq;

/// Letters of a setup code: no 0/O, 1/I/L, so that it can be read off a terminal and typed.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Characters in a setup code (31^12: about 59 bits; it lives until the first password).
pub const CODE_LEN: usize = 12;

/// A file operation that failed, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` atomically, readable by its owner only (homespotd's identity key
/// is written this way too).
pub fn write_private(path: &Path, data: impl AsRef<[u8]>) -> Result<(), FileError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err(&tmp))?;
    // An existing temporary file keeps its mode: make sure.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(err(&tmp))?;
    f.write_all(data.as_ref()).map_err(err(&tmp))?;
    f.sync_all().map_err(err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(err(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// The file's text, `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<String>, FileError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(path)(e)),
    }
}

/// A new setup code from `rng`, written to `path` (root-only).
pub fn new_setup_code(path: &Path, rng: &mut impl RngCore) -> Result<String, FileError> {
    let code: String = (0..CODE_LEN)
        .map(|_| {
            // Rejection sampling: no bias towards the first letters.
            loop {
                let b = (rng.next_u32() & 0xff) as u8;
                if usize::from(b) < ALPHABET.len() * (256 / ALPHABET.len()) {
                    break char::from(ALPHABET[usize::from(b) % ALPHABET.len()]);
                }
            }
        })
        .collect();
    write_private(path, &code)?;
    Ok(code)
}

/// Whether `given` is the setup code in `path` (spaces and case ignored; constant-time).
pub fn setup_code_ok(path: &Path, given: &str) -> Result<bool, FileError> {
    let Some(code) = read(path)? else {
        return Ok(false);
    };
    let given: String = given
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    Ok(code.len() == CODE_LEN && bool::from(code.as_bytes().ct_eq(given.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn secrets_are_private_atomic_and_the_code_checks() {
        let dir = tempfile::tempdir().expect("dir");
        let p = dir.path().join("admin.password");
        assert!(read(&p).expect("read").is_none());
        write_private(&p, "$argon2id$...\n").expect("write");
        assert_eq!(read(&p).expect("read").as_deref(), Some("$argon2id$..."));
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!p.with_extension("tmp").exists());

        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let c = dir.path().join("admin.setup");
        let code = new_setup_code(&c, &mut rng).expect("code");
        assert_eq!(code.len(), CODE_LEN);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
        let spaced = format!("{} {}", &code[..6], code[6..].to_lowercase());
        assert!(setup_code_ok(&c, &spaced).expect("check"));
        assert!(!setup_code_ok(&c, "AAAAAAAAAAAA").expect("check"));
        assert!(!setup_code_ok(&c, "").expect("check"));
        std::fs::remove_file(&c).expect("rm");
        assert!(!setup_code_ok(&c, &code).expect("no file, no code"));
    }
}
