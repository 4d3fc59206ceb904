//! What the emulated boards ([`crate::board`]) and the Bluetooth guest ([`crate::bluez`])
//! both put in their initramfs: busybox from a Debian root, kernel modules in the order they
//! load, an executable `/init`, and the cpio archive of the tree.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The kernel version of the Debian root `root` (its one `lib/modules/<version>`).
pub fn kernel_version(root: &Path) -> Result<String> {
    std::fs::read_dir(root.join("lib/modules"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .next()
        .context("no kernel modules")
}

/// A fresh tree at `w` with `dirs` and `bin/busybox` from `root`.
pub fn tree(w: &Path, dirs: &[&str], root: &Path) -> Result<()> {
    let _ = std::fs::remove_dir_all(w);
    for d in dirs.iter().chain(&["bin"]) {
        std::fs::create_dir_all(w.join(d))?;
    }
    std::fs::copy(root.join("bin/busybox"), w.join("bin/busybox"))?;
    Ok(())
}

/// Copies the modules `wanted` need, and they, from `root`'s kernel `kv` into `dest`; returns
/// their file names in load order.
pub fn modules(root: &Path, kv: &str, wanted: &[&str], dest: &Path) -> Result<Vec<String>> {
    let mods = root.join("lib/modules").join(kv);
    let dep = std::fs::read_to_string(mods.join("modules.dep"))?;
    let mut names = Vec::new();
    for m in crate::board::module_order(&dep, wanted) {
        let name = m.rsplit('/').next().unwrap_or(&m).to_string();
        std::fs::copy(mods.join(&m), dest.join(&name))?;
        names.push(name);
    }
    Ok(names)
}

/// Writes `w/init` (executable) and packs `w` into `out` (gzip'd newc cpio).
pub fn pack(w: &Path, init: &str, out: PathBuf) -> Result<PathBuf> {
    std::fs::write(w.join("init"), init)?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(w.join("init"), std::fs::Permissions::from_mode(0o755))?;
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            w.display(),
            out.display()
        ))
        .status()?;
    if !st.success() {
        bail!("cpio failed");
    }
    Ok(out)
}
