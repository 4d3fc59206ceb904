//! What the agent keeps on disk: its client key (the same key gets the same global address
//! from a HomeSpot). The HomeSpot identities it trusts per network are in [`crate::trust`].

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
    let mut o = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(o.write(true).create_new(true), 0o600);
    o.open(&path)
        .and_then(|mut f| f.write_all(&k))
        .map_err(|e| err(&path, e.to_string()))?;
    Ok(k)
}

/// Hex of the first bytes of an identity, for logs.
pub fn short_id(id: &[u8; 32]) -> String {
    id[..6].iter().map(|b| format!("{b:02x}")).collect()
}
