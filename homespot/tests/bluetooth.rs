//! Issue 16 (homespotd's side; started): a `kind = "bluetooth"` link served as BlueZ's PAN
//! NAP, against real `bluetoothd` with two `btvirt` controllers in a QEMU guest
//! (testkit::bluez). homespotd registers the NAP on hci0 with bridge pan0 and holds it (a
//! second registration is refused with AlreadyExists while it runs); hci1 cannot even see
//! hci0 while pairing is closed; `homespotd bluetooth pair` opens the window, hci1 and hci2
//! find it, hci1 pairs and its PAN connects (a bnep interface); after the window hci2's
//! pairing is refused by homespotd's agent and counted. bluetoothd restarted: the NAP is
//! registered again within 2 s (printed).

use std::time::Duration;

use testkit::bluez::{run_guest, GUEST_PRELUDE};
use testkit::Scratch;

const HOMESPOTD: &str = env!("CARGO_BIN_EXE_homespotd");

#[test]
fn bluez_nap_pairing_window_and_bluetoothd_restart() {
    if !testkit::can_run() {
        eprintln!("skipped: needs root");
        return;
    }
    for tool in ["qemu-system-x86_64", "bluetoothd", "btvirt", "busctl"] {
        assert!(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("command -v {tool}"))
                .status()
                .is_ok_and(|s| s.success()),
            "{tool} is needed (scripts/setup installs it)"
        );
    }
    let dir = Scratch::new("bluez").expect("scratch");
    let client = testkit::board::repo_root().join("testkit/guest/bt_client.py");
    let script = format!(
        r#"BT_CONTROLLERS=3
{GUEST_PRELUDE}
HS={HOMESPOTD}
BT={client}
mkdir -p /tmp/hs
cat > /tmp/hs/homespotd.toml <<CFG
[server]
lease_db = "/tmp/hs/leases.redb"
status_socket = "/tmp/hs/status.sock"
[proxy]
enabled = false
[admin]
enabled = false
[[link]]
name = "bt"
kind = "bluetooth"
interface = "pan0"
address = "10.93.2.1/24"
pools = ["10.93.2.100-10.93.2.199"]
bluez_adapter = "hci0"
pairing = "button"
pairing_window = "20s"
CFG
ip link add pan0 type bridge && ip link set pan0 type bridge forward_delay 0 stp_state 0
ip addr add 10.93.2.1/24 dev pan0 && ip link set pan0 up
$HS -c /tmp/hs/homespotd.toml > "$OUT/homespotd.log" 2>&1 &
for i in $(seq 1 80); do grep -q "Bluetooth NAP registered" "$OUT/homespotd.log" && break; sleep 0.25; done
grep -q "Bluetooth NAP registered" "$OUT/homespotd.log" && echo "nap_registered" >> "$OUT/result"
held() {{ busctl call org.bluez /org/bluez/hci0 org.bluez.NetworkServer1 Register ss nap pan0 2>&1 | tee -a "$OUT/held.log" | grep -qi 'already'; }}
held && echo "nap_held" >> "$OUT/result"
echo "closed: $(python3 $BT discover 6)" >> "$OUT/result"
$HS -c /tmp/hs/homespotd.toml bluetooth pair >> "$OUT/result" 2>&1
echo "open: $(python3 $BT discover 15)" >> "$OUT/result"
echo "open2: $(BT_CLIENT=hci2 python3 $BT discover 15)" >> "$OUT/result"
echo "window: $(python3 $BT pair)" >> "$OUT/result"
echo "pan: $(python3 $BT connect)" >> "$OUT/result"
# The window closes; a device that did not pair in it is refused (by the agent: counted).
for i in $(seq 1 120); do grep -q "Bluetooth pairing closed" "$OUT/homespotd.log" && break; sleep 0.25; done
# (hci0 scans for pages only while a paired device is away: hci1 goes.)
python3 $BT disconnect >> "$OUT/result"
sleep 1
echo "late: $(BT_CLIENT=hci2 python3 $BT pair)" >> "$OUT/result"
$HS -c /tmp/hs/homespotd.toml status --json > "$OUT/status-after-refusal.json"
bridge link show >> "$OUT/bridge.txt"
# bluetoothd restarts: how long until homespotd holds the NAP again.
kill $BLUETOOTHD; wait $BLUETOOTHD 2>/dev/null
start_bluetoothd
T0=$(cut -d' ' -f1 /proc/uptime)
for i in $(seq 1 200); do held && break; sleep 0.05; done
T1=$(cut -d' ' -f1 /proc/uptime)
held && echo "reregistered_after_s: $(awk -v a="$T0" -v b="$T1" 'BEGIN {{ print b - a }}')" >> "$OUT/result"
"#,
        client = client.display()
    );
    let g = run_guest(&script, &dir, Duration::from_secs(600)).expect("guest");
    let result = g.file("result");
    println!(
        "guest ran {:.0} s; results:\n{result}\nhomespotd:\n{}",
        g.wall.as_secs_f64(),
        g.file("homespotd.log")
    );
    assert!(result.contains("nap_registered"), "{}", g.console);
    assert!(
        result.contains("nap_held"),
        "a second registration must be refused while homespotd holds the NAP"
    );
    assert!(
        result.contains("closed: NOT_FOUND"),
        "hidden while pairing is closed"
    );
    assert!(result.contains("Bluetooth pairing is open"), "{result}");
    assert!(result.contains("open: FOUND"), "found in the window");
    assert!(
        result.contains("late: REFUSED"),
        "pairing after the window is refused"
    );
    // Whether the agent saw (and counted) the refusal, or the radio already refused it (no
    // page scan while nothing paired is away): printed; issue 16 still wants it counted.
    let status = g.file("status-after-refusal.json");
    let counters = status
        .find("\"bluetooth\":")
        .map(|i| status[i..].split('}').next().unwrap_or("").to_string())
        .unwrap_or_default();
    println!("after the refused pairing: {counters}}}");
    assert!(result.contains("window: PAIRED"), "{result}");
    assert!(
        result.contains("pan: IFACE bnep"),
        "{result}\n{}",
        g.file("bluetoothd.log")
    );
    let secs: f64 = result
        .lines()
        .find_map(|l| l.strip_prefix("reregistered_after_s: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::MAX);
    println!("NAP registered again {secs:.2} s after bluetoothd restarted");
    assert!(secs <= 2.0, "target: within 2 s");
}
