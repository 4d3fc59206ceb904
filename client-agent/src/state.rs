//! What the agent keeps on disk: its client key (the same key gets the same global address
//! from a HomeSpot) and the HomeSpot identities it pinned on first use.

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

/// Identities pinned so far (`dir/homespots`, one hex key per line).
pub fn pinned(dir: &Path) -> Vec<[u8; 32]> {
    let text = std::fs::read_to_string(dir.join("homespots")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.len() != 64 {
                return None;
            }
            let mut k = [0u8; 32];
            for (i, b) in k.iter_mut().enumerate() {
                *b = u8::from_str_radix(l.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(k)
        })
        .collect()
}

/// Pins `id` (trust on first use).
pub fn pin(dir: &Path, id: &[u8; 32]) -> std::io::Result<()> {
    let line: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("homespots"))?;
    writeln!(f, "{line}")
}
