//! One command on the kernel's Bluetooth management socket: Set Connectable. BlueZ's D-Bus
//! API (5.66) has no Connectable property, and bluetoothd leaves BR/EDR page scan to the
//! kernel's accept list: only devices already paired could reach the adapter, so a
//! stranger's pairing attempt outside the window would fail in the radio, unseen. With the
//! adapter connectable every attempt reaches the pairing agent, which refuses and counts it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

const AF_BLUETOOTH: libc::c_int = 31;
const BTPROTO_HCI: libc::c_int = 1;
const HCI_CHANNEL_CONTROL: u16 = 3;
const HCI_DEV_NONE: u16 = 0xffff;
const OP_SET_CONNECTABLE: u16 = 0x0007;
const EV_CMD_COMPLETE: u16 = 0x0001;
const EV_CMD_STATUS: u16 = 0x0002;

#[repr(C)]
struct SockaddrHci {
    family: libc::sa_family_t,
    dev: u16,
    channel: u16,
}

/// The controller index of `hciN`.
pub fn index(adapter: &str) -> Option<u16> {
    adapter.strip_prefix("hci")?.parse().ok()
}

/// Sets adapter `index` connectable (or not); waits up to a second for the kernel's answer.
pub fn set_connectable(index: u16, on: bool) -> io::Result<()> {
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            AF_BLUETOOTH,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            BTPROTO_HCI,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new, valid descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let addr = SockaddrHci {
        family: AF_BLUETOOTH as libc::sa_family_t,
        dev: HCI_DEV_NONE,
        channel: HCI_CHANNEL_CONTROL,
    };
    // SAFETY: addr is a valid sockaddr_hci of the size given.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const SockaddrHci).cast(),
            std::mem::size_of::<SockaddrHci>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut cmd = Vec::with_capacity(7);
    cmd.extend_from_slice(&OP_SET_CONNECTABLE.to_le_bytes());
    cmd.extend_from_slice(&index.to_le_bytes());
    cmd.extend_from_slice(&1u16.to_le_bytes());
    cmd.push(u8::from(on));
    let mut file = std::fs::File::from(fd);
    use std::io::{Read as _, Write as _};
    file.write_all(&cmd)?;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 200) } <= 0 {
            continue;
        }
        let n = file.read(&mut buf)?;
        let Some(ev) = buf.get(..n) else { continue };
        if ev.len() < 9 {
            continue;
        }
        let code = u16::from_le_bytes([ev[0], ev[1]]);
        let opcode = u16::from_le_bytes([ev[6], ev[7]]);
        if (code == EV_CMD_COMPLETE || code == EV_CMD_STATUS) && opcode == OP_SET_CONNECTABLE {
            return match ev[8] {
                0 => Ok(()),
                s => Err(io::Error::other(format!(
                    "Set Connectable: status {s:#04x}"
                ))),
            };
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "Set Connectable: no answer from the kernel",
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn adapter_index() {
        assert_eq!(super::index("hci0"), Some(0));
        assert_eq!(super::index("hci12"), Some(12));
        assert_eq!(super::index("usb0"), None);
    }
}
