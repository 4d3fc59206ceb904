//! Real BlueZ in a QEMU guest: this machine's kernel has no Bluetooth, Debian's 6.1 kernel has
//! it as modules (`bluetooth`, `hci_vhci`, `bnep`, `bridge`). The guest boots that kernel under
//! TCG with the host's `/` shared read-only over 9p and a tmpfs overlay on top, so it runs the
//! host's own `bluetoothd`, `dbus-daemon`, `btvirt` (virtual controllers through `/dev/vhci`)
//! and the binaries the tests built, and runs a bash script as PID 1. The script writes what
//! it found to `$OUT` (a second, writable 9p share) and powers the guest off.
//!
//! The script gets `KMODS` (the kernel's module tree, to bind on `/lib/modules/$KV`) and `KV`.
//! The traps (../shared/recipes/bluez-in-qemu/): preload the crypto modules before `btvirt`;
//! one `modprobe -a`; `btvirt` under `stdbuf -oL`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::board::repo_root;
use crate::Scratch;

/// What a guest run left.
pub struct Guest {
    /// The serial console.
    pub console: String,
    /// The guest's `$OUT` folder on the host.
    pub out: PathBuf,
    /// From QEMU's start to its exit.
    pub wall: Duration,
}

impl Guest {
    /// A file the guest wrote to `$OUT` ("" if none).
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.out.join(name)).unwrap_or_default()
    }
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in @MODULES@; do insmod "/mods/$m" || echo "[init] insmod $m failed"; done
for i in $(seq 1 50); do grep -q hostroot /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null && break; sleep 0.1; done
mkdir -p /host /up /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose hostroot /host || { echo "[init] 9p mount failed"; poweroff -f; }
mount -t tmpfs -o size=512m tmpfs /up
mkdir -p /up/u /up/w
mount -t overlay overlay -o lowerdir=/host,upperdir=/up/u,workdir=/up/w /newroot || { echo "[init] overlay failed"; poweroff -f; }
mkdir -p /newroot/mnt/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 out /newroot/mnt/out
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/bin/env OUT=/mnt/out KV=@KV@ KMODS=@KMODS@ /bin/bash @SCRIPT@
"#;

/// Boots the guest and runs `script` (bash) in it as PID 1; returns when the guest powers
/// off, or fails after `timeout`.
pub fn run_guest(script: &str, dir: &Scratch, timeout: Duration) -> Result<Guest> {
    let fetch = repo_root().join("image/boards/fetch");
    let out = Command::new(&fetch).arg("amd64").output()?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            fetch.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let kv = crate::initramfs::kernel_version(&root)?;
    let mods = root.join("lib/modules").join(&kv);
    let script_path = dir.join("guest.sh");
    std::fs::write(&script_path, script)?;
    let out_dir = dir.join("out");
    std::fs::create_dir_all(&out_dir)?;
    let initrd = initramfs(&root, &mods, &kv, &script_path, dir)?;
    let console_path = dir.join("guest-console.log");
    let console = std::fs::File::create(&console_path)?;
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
            "-smp",
            "2",
            "-nographic",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
        ])
        .arg(root.join("vmlinuz"))
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 loglevel=4 panic=-1"])
        .arg("-virtfs")
        .arg("local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap")
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=out,security_model=none",
            out_dir.display()
        ))
        .stdin(Stdio::null())
        .stdout(console.try_clone()?)
        .stderr(console)
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let deadline = started + timeout;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the guest did not finish within {timeout:?}:\n{}",
                std::fs::read_to_string(&console_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Guest {
        console: std::fs::read_to_string(&console_path).unwrap_or_default(),
        out: out_dir,
        wall: started.elapsed(),
    })
}

fn initramfs(root: &Path, mods: &Path, kv: &str, script: &Path, dir: &Scratch) -> Result<PathBuf> {
    let w = dir.join("guest-initramfs");
    crate::initramfs::tree(&w, &["mods", "proc", "sys", "dev"], root)?;
    let names = crate::initramfs::modules(
        root,
        kv,
        &["virtio_pci", "9pnet_virtio", "9p", "overlay"],
        &w.join("mods"),
    )?;
    let init = INIT
        .replace("@MODULES@", &names.join(" "))
        .replace("@KV@", kv)
        .replace("@KMODS@", &mods.display().to_string())
        .replace("@SCRIPT@", &script.display().to_string());
    crate::initramfs::pack(&w, &init, dir.join("guest-initramfs.cpio.gz"))
}

/// The start of every Bluetooth guest script: modules (the crypto ones before btvirt), the
/// system bus, `$BT_CONTROLLERS` (default 2) virtual controllers that reach each other (retried: the first reset can
/// time out under TCG), `bluetoothd`. Logs go to `$OUT`. Ends with `finish` on exit, which
/// powers the guest off.
pub const GUEST_PRELUDE: &str = r#"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
log() { echo "[guest $(cut -d' ' -f1 /proc/uptime)] $*" | tee -a "$OUT/guest.log"; }
finish() { log "done"; sync; echo o > /proc/sysrq-trigger; sleep 60; }
trap finish EXIT
mount -t tmpfs tmpfs /run; mkdir -p /run/dbus /run/netns
mkdir -p "/lib/modules/$KV" && mount --bind "$KMODS" "/lib/modules/$KV"
ip link set lo up
modprobe -a bluetooth hci_vhci bnep bridge af_alg algif_hash algif_skcipher cmac ecb || log "modprobe failed"
[ -s /etc/machine-id ] || dbus-uuidgen > /etc/machine-id
dbus-daemon --system --fork
ok_ctrls() { hciconfig | grep 'BD Address' | grep -vc '00:00:00:00:00:00'; }
N=${BT_CONTROLLERS:-2}
for try in 1 2 3; do
  stdbuf -oL btvirt -l$N >> "$OUT/btvirt.log" 2>&1 &
  BTVIRT=$!
  for i in $(seq 1 20); do sleep 0.5; [ "$(ok_ctrls)" -ge $N ] && break; done
  [ "$(ok_ctrls)" -ge $N ] && break
  log "btvirt try $try: $(ok_ctrls) controller(s); again"
  kill $BTVIRT; wait $BTVIRT; sleep 1
done
# Devices seen by a scan stay known (BlueZ forgets them after 30 s by default): a stranger can
# try to pair long after it saw the HomeSpot.
mkdir -p /etc/bluetooth && printf '[General]\nTemporaryTimeout = 0\n' > /etc/bluetooth/main.conf
start_bluetoothd() { bluetoothd -n -d >> "$OUT/bluetoothd.log" 2>&1 & BLUETOOTHD=$!; }
start_bluetoothd
for i in $(seq 1 40); do busctl introspect org.bluez /org/bluez/hci0 >/dev/null 2>&1 && break; sleep 0.25; done
log "bluez up: $(hciconfig | grep -c 'BD Address') controller(s)"
"#;
