//! Issue 15: the files the router package installs. The init script and the package's
//! scripts pass `shellcheck -s sh` (busybox ash on OpenWrt); the init script's service
//! definition runs homespotd on the UCI config with respawn, a reload trigger on `uci commit
//! homespot` and SIGHUP for `reload`; the command line it gives procd is one homespotd accepts.
//! The packaged `/etc/config/homespot` is valid (unit test `config::uci`). The x86_64 and
//! aarch64 binaries `image/build` made were linked with the code homespotd runs first.

use std::path::{Path, PathBuf};
use std::process::Command;

fn image() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../image")
}

#[test]
fn package_scripts_pass_shellcheck_as_posix_sh() {
    let files = [
        "files/etc/init.d/homespot",
        "files/etc/uci-defaults/90-homespot",
        "files/postinst",
        "files/prerm",
    ];
    let out = Command::new("shellcheck")
        .arg("-s")
        .arg("sh")
        .args(files.iter().map(|f| image().join(f)))
        .output()
        .expect("shellcheck is needed (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = Command::new("shellcheck")
        .args([
            image().join("build"),
            image().join("boards/fetch"),
            image().join("test-mipsel"),
            image().join("hot-link/rust-lld"),
        ])
        .output()
        .expect("shellcheck");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_init_script_gives_procd_a_command_line_homespotd_accepts() {
    // The service definition, as procd receives it: stub the procd helpers and print them.
    let script = format!(
        "procd_open_instance() {{ :; }}\nprocd_close_instance() {{ :; }}\n\
         procd_set_param() {{ echo \"param $*\"; }}\nprocd_add_reload_trigger() {{ echo \"trigger $*\"; }}\n\
         procd_send_signal() {{ echo \"signal $*\"; }}\nmkdir() {{ :; }}\n\
         . '{}'\nstart_service\nservice_triggers\nreload_service\n",
        image().join("files/etc/init.d/homespot").display()
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("sh");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("param command /usr/sbin/homespotd --config /etc/config/homespot"),
        "{text}"
    );
    assert!(text.contains("param respawn 3600 5 5"), "{text}");
    assert!(text.contains("param file /etc/config/homespot"), "{text}");
    assert!(text.contains("trigger homespot"), "{text}");
    assert!(text.contains("signal homespot * HUP"), "{text}");
    // homespotd takes that command line (checked here on the packaged config, as a file).
    let out = Command::new(env!("CARGO_BIN_EXE_homespotd"))
        .args([
            "--config",
            &image()
                .join("files/etc/config/homespot")
                .display()
                .to_string(),
            "status",
            "--help",
        ])
        .output()
        .expect("homespotd");
    assert!(out.status.success());
}

/// `image/hot-link/rust-lld` leaves the order it gave the linker beside the binary; it holds
/// only names the binary has, so a list gone stale (or a link without it) shows as a short one.
/// Needs `image/build x86_64 aarch64` first (scripts/test runs it), as the board tests do.
#[test]
fn the_board_packages_link_hot_code_first() {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for triple in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        let deps = target.join(triple).join("release/deps");
        let newest = std::fs::read_dir(&deps)
            .unwrap_or_else(|e| {
                panic!("{}: {e} (run `image/build x86_64 aarch64`)", deps.display())
            })
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name();
                let n = n.to_string_lossy();
                n.starts_with("homespotd-") && n.ends_with(".hot-code")
            })
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .unwrap_or_else(|| {
                panic!(
                    "no homespotd-*.hot-code in {}: linked without the order",
                    deps.display()
                )
            });
        let n = std::fs::read_to_string(newest.path())
            .expect("order")
            .lines()
            .count();
        assert!(
            n >= 1000,
            "{triple}: only {n} functions placed first (scripts/hot-code writes the list anew)"
        );
    }
}
