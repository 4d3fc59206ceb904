//! Release builds of homespotd for x86_64-unknown-linux-gnu place the functions listed in
//! `hot-code.txt` (written by `scripts/hot-code`) at the start of the code, so the pages a
//! running homespotd maps hold code it runs (BENCHMARKS.md, "Hot code first"). That target
//! links with rust-lld since Rust 1.90, which reads the list; with another linker chosen (in
//! the environment, a cargo config file or the flags), an older Rust or `HOMESPOT_NO_HOT_CODE`
//! set, nothing is asked of the linker. Names the build does not have are skipped without a
//! warning: a stale list only makes less difference.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=hot-code.txt");
    println!("cargo:rerun-if-env-changed=HOMESPOT_NO_HOT_CODE");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("PROFILE") != "release"
        || env::var_os("HOMESPOT_NO_HOT_CODE").is_some()
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        // A linker from a cargo config file (`[target.<triple>] linker`), which cargo names here.
        || env::var_os("RUSTC_LINKER").is_some()
        || !lld_by_default()
    {
        return;
    }
    let list = format!("{}/hot-code.txt", var("CARGO_MANIFEST_DIR"));
    if std::path::Path::new(&list).exists() {
        println!("cargo:rustc-link-arg-bin=homespotd=-Wl,--symbol-ordering-file={list}");
        println!("cargo:rustc-link-arg-bin=homespotd=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether rustc is 1.90 or later (rust-lld the default linker of x86_64-unknown-linux-gnu)
/// and no linker choice is in the flags (`-C linker=`, `-C linker-features=-lld`,
/// `-C link-self-contained=`, `-C link-arg=-fuse-ld=bfd`: GNU ld refuses the list's flag).
fn lld_by_default() -> bool {
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|k| flags.contains(k))
    {
        return false;
    }
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).arg("-V").output() else {
        return false;
    };
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let v = String::from_utf8_lossy(&out.stdout);
    let mut nums = v
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split('.')
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    major > 1 || (major == 1 && minor >= 90)
}
