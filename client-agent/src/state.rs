//! What the agent keeps on disk: its client key (the same key gets the same global address
//! from a HomeSpot). The HomeSpot identities it trusts per network are in [`crate::trust`].

use std::io::{Read, Write};
use std::path::Path;

/// 32 random bytes from the kernel.
pub fn random32() -> std::io::Result<[u8; 32]> {
    let mut k = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut k)?;
    Ok(k)
}

/// The client key in `dir/client.key`, made (mode 0600) on first use.
pub fn client_key(dir: &Path) -> anyhow::Result<[u8; 32]> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    let path = dir.join("client.key");
    if let Ok(b) = std::fs::read(&path) {
        return b
            .try_into()
            .map_err(|_| anyhow::anyhow!("{}: must hold 32 bytes", path.display()));
    }
    let k = random32()?;
    let mut o = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::mode(o.write(true).create_new(true), 0o600);
    o.open(&path)
        .and_then(|mut f| f.write_all(&k))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(k)
}

/// Hex of the first bytes of an identity, for logs.
pub fn short_id(id: &[u8; 32]) -> String {
    id[..6].iter().map(|b| format!("{b:02x}")).collect()
}
