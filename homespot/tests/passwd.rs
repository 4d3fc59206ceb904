//! Issue 14: `homespotd passwd` sets the admin panel's password as root: read from standard
//! input, stored as an argon2id hash in a root-only file beside the lease database, the
//! one-time setup code removed; a short password is refused and changes nothing. Only files:
//! no namespace is needed.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};

const HOMESPOTD: &str = env!("CARGO_BIN_EXE_homespotd");

fn passwd(config: &std::path::Path, input: &str) -> (bool, String) {
    let mut p = Command::new(HOMESPOTD)
        .args(["-c", &config.display().to_string(), "passwd"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("homespotd passwd");
    p.stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = p.wait_with_output().expect("wait");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn passwd_writes_a_root_only_argon2id_hash_and_uses_up_the_setup_code() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("homespotd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlease_db = \"{}\"\n[[link]]\nname = \"wifi\"\ninterface = \"wlan0\"\naddress = \"10.42.1.1/24\"\npools = [\"10.42.1.100-10.42.1.199\"]\n",
            dir.path().join("leases.redb").display()
        ),
    )
    .expect("config");
    let hash = dir.path().join("admin.password");
    let code = dir.path().join("admin.setup-code");
    std::fs::write(&code, "ABCDEFGHJKLM").expect("code");

    let (ok, text) = passwd(&config, "short\n");
    assert!(!ok, "{text}");
    assert!(text.contains("homespotd passwd:"), "{text}");
    assert!(!hash.exists() && code.exists(), "nothing changed");

    let (ok, text) = passwd(&config, "a long enough password\n");
    assert!(ok, "{text}");
    assert!(text.contains(&hash.display().to_string()), "{text}");
    let stored = std::fs::read_to_string(&hash).expect("hash");
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(web_admin::password::verify(&stored, "a long enough password").expect("verify"));
    assert!(!web_admin::password::verify(&stored, "a long enough passwore").expect("verify"));
    let mode = std::fs::metadata(&hash).expect("meta").permissions().mode();
    assert_eq!(mode & 0o077, 0, "root only: {mode:o}");
    assert!(!code.exists(), "the setup code is used up");
}
