//! What the agent keeps on disk: its client key (the same key gets the same global address
//! from a HomeSpot). The HomeSpot identities it trusts per network are in [`crate::trust`].
//! Both are written whole or not at all ([`write_private`]): a crash or a power cut never
//! leaves a torn key (the agent would not start) or an empty trust file (every pin lost).

use std::io::{Read, Write};
use std::path::Path;

use crate::error::AgentError;

/// 32 random bytes from the kernel.
pub fn random32() -> std::io::Result<[u8; 32]> {
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
    Ok(k)
}

/// The client key in `dir/client.key`, made (mode 0600) on first use.
pub fn client_key(dir: &Path) -> Result<[u8; 32], AgentError> {
    let err = |p: &Path, reason: String| AgentError::State {
        path: p.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
    let path = dir.join("client.key");
    if let Ok(b) = std::fs::read(&path) {
        return b
            .try_into()
            .map_err(|_| err(&path, "must hold 32 bytes".into()));
    }
    let k = random32().map_err(|e| AgentError::Random(e.to_string()))?;
    write_private(&path, &k).map_err(|e| err(&path, e.to_string()))?;
    Ok(k)
}

/// Writes `data` to `path` whole or not at all, readable by its owner only: a temporary file
/// beside it (mode 0600), flushed to the disk, renamed over `path`, and the folder flushed.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let mut o = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(o.write(true).create(true).truncate(true), 0o600);
    let mut f = o.open(&tmp)?;
    // A temporary file left by an earlier crash keeps its mode: make sure.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Hex of the first bytes of an identity, for logs.
pub fn short_id(id: &[u8; 32]) -> String {
    id[..6].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_written_whole_and_private_and_kept() {
        let dir = tempfile::tempdir().expect("dir");
        let k = client_key(dir.path()).expect("made");
        assert_eq!(client_key(dir.path()).expect("read"), k);
        let path = dir.path().join("client.key");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("client.key")]);
    }

    #[test]
    fn a_temporary_file_left_by_a_crash_is_replaced() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("trust");
        let tmp = dir.path().join(".trust.tmp");
        std::fs::write(&tmp, b"torn").expect("left over");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("mode");
        write_private(&path, b"whole\n").expect("written");
        assert_eq!(std::fs::read(&path).expect("read"), b"whole\n");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!tmp.exists());
    }
}
