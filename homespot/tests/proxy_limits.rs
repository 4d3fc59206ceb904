//! Issue 12, acceptance 2: one device cannot take the proxy from the others. A host with 8
//! addresses opens 8 x 256 connections to an origin that never answers; a second device keeps
//! being served; the held requests end with 504 after the response timeout; memory during and
//! after is reported. Also: an idle CONNECT tunnel is closed after idle_timeout.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use testkit::origin::Origin;
use testkit::{rss_kb, Netns, Topology};

const PROXY: &str = "10.77.1.1:3128";

/// A listener in `ns` at `addr` that accepts and never answers, holding every connection
/// until `hold` has passed.
fn silent_origin(
    ns: &Netns,
    addr: &str,
    hold: Duration,
) -> std::thread::JoinHandle<anyhow::Result<usize>> {
    let addr: SocketAddr = addr.parse().expect("addr");
    let h = ns
        .spawn_thread(move || {
            // A backlog for all the proxy's connections at once: std's 128 would drop SYNs
            // in the burst and turn some of them into connect timeouts (502), not 504s.
            let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                .expect("socket");
            sock.set_reuse_address(true).expect("reuse");
            sock.bind(&addr.into()).expect("bind");
            sock.listen(4096).expect("listen");
            let l: TcpListener = sock.into();
            l.set_nonblocking(true).expect("nonblocking");
            let end = Instant::now() + hold;
            let mut held = Vec::new();
            while Instant::now() < end {
                match l.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            held.len()
        })
        .expect("thread");
    // Listening before the caller goes on.
    std::thread::sleep(Duration::from_millis(300));
    h
}

/// One response: its head and as much of its body as Content-Length says.
fn read_response(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return buf,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn status_of(head: &[u8]) -> u16 {
    String::from_utf8_lossy(head)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn bed(proxy: &str) -> (Bed, Origin) {
    let bed = Bed::start_on(Topology::with_air(1).expect("topology"), "", proxy).expect("bed");
    bed.topo
        .client
        .run(&["ip", "addr", "add", "10.77.1.50/24", "dev", "eth0"])
        .expect("client address");
    let origin =
        Origin::start(&bed.topo.net, "10.77.0.2:8080".parse().expect("addr")).expect("origin");
    (bed, origin)
}

#[test]
fn one_device_with_many_addresses_cannot_take_the_proxy() {
    need_root!();
    let (bed, _origin) = bed(
        "[proxy]\nallow_destinations = [\"10.77.0.2\"]\nresponse_timeout = \"6s\"\nconnect_timeout = \"1s\"\n",
    );
    let pid = bed.daemon.as_ref().expect("daemon").pid();
    let silent = silent_origin(&bed.topo.net, "10.77.0.2:9000", Duration::from_secs(40));
    let attacker = Netns::new("atk").expect("attacker");
    bed.topo.attach(0, &attacker, "wlan0").expect("attach");
    for i in 0..8 {
        attacker
            .run(&[
                "ip",
                "addr",
                "add",
                &format!("10.77.1.{}/24", 60 + i),
                "dev",
                "wlan0",
            ])
            .expect("address");
    }
    let rss_before = rss_kb(pid);
    // 8 addresses x 256 connections, each with a request the origin never answers.
    let attack = attacker
        .spawn_thread(|| {
            let mut held = Vec::new();
            let mut not_connected = 0;
            for i in 0..8u8 {
                for _ in 0..256 {
                    let s =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .expect("socket");
                    let from: SocketAddr = format!("10.77.1.{}:0", 60 + i).parse().expect("addr");
                    s.bind(&from.into()).expect("bind");
                    let to: SocketAddr = PROXY.parse().expect("addr");
                    if s.connect_timeout(&to.into(), Duration::from_secs(2))
                        .is_err()
                    {
                        not_connected += 1;
                        continue;
                    }
                    let mut s: TcpStream = s.into();
                    let _ = s.write_all(
                        b"GET http://10.77.0.2:9000/ HTTP/1.1\r\nHost: 10.77.0.2:9000\r\n\r\n",
                    );
                    held.push((s, Instant::now()));
                }
            }
            (held, not_connected)
        })
        .expect("attack thread");
    let (held, not_connected) = attack.join().expect("join").expect("attack");
    assert_eq!(
        not_connected, 0,
        "every attack connection is accepted by the kernel"
    );
    std::thread::sleep(Duration::from_millis(500));
    let rss_during = rss_kb(pid);
    // The second device, on the same link: 20 requests while the attacker holds its share.
    let (ok, failed) = bed
        .topo
        .client
        .in_thread(|| {
            let (mut ok, mut failed) = (0, 0);
            for _ in 0..20 {
                let mut s = TcpStream::connect(PROXY).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
                s.write_all(b"GET http://10.77.0.2:8080/bytes/1000 HTTP/1.1\r\nHost: 10.77.0.2:8080\r\nConnection: close\r\n\r\n")
                    .expect("write");
                let mut resp = Vec::new();
                let _ = s.read_to_end(&mut resp);
                if status_of(&resp) == 200 && resp.len() > 1000 {
                    ok += 1;
                } else {
                    failed += 1;
                    eprintln!("second device: {}", String::from_utf8_lossy(&resp[..resp.len().min(200)]));
                }
            }
            (ok, failed)
        })
        .expect("client thread");
    // What the attacker's connections got: 503 at once beyond its share, 504 after the
    // response timeout for the ones admitted.
    let (mut s503, mut s504, mut slowest) = (0, 0, Duration::ZERO);
    let mut other = Vec::new();
    for (mut s, sent) in held {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let buf = read_response(&mut s);
        let n = buf.len();
        match status_of(&buf[..n]) {
            503 => s503 += 1,
            504 => {
                s504 += 1;
                slowest = slowest.max(sent.elapsed());
                assert!(
                    String::from_utf8_lossy(&buf[..n]).contains("sent no response within 6s"),
                    "{}",
                    String::from_utf8_lossy(&buf[..n])
                );
            }
            code => other.push(format!(
                "{code}: {}",
                String::from_utf8_lossy(&buf[..n.min(300)])
            )),
        }
    }
    std::thread::sleep(Duration::from_secs(10));
    let rss_after = rss_kb(pid);
    eprintln!(
        "attacker: {s504} admitted (504 after the response timeout, the last after {slowest:?}), \
         {s503} refused with 503, {} other {other:?}; second device: {ok} ok, {failed} failed; \
         homespotd RSS before {rss_before} kB, during {rss_during} kB, 10 s after {rss_after} kB",
        other.len()
    );
    assert_eq!(failed, 0, "the second device must be served");
    assert_eq!(ok, 20);
    assert_eq!(
        s504, 256,
        "one device holds at most max_connections_per_client"
    );
    assert_eq!(s503, 8 * 256 - 256);
    assert!(slowest < Duration::from_secs(14), "504 after {slowest:?}");
    assert!(
        rss_after < rss_during.max(rss_before) + 1024,
        "memory kept after the burst"
    );
    drop(silent);
}

#[test]
fn an_idle_tunnel_is_closed() {
    need_root!();
    let (bed, _origin) = bed(
        "[proxy]\nallow_destinations = [\"10.77.0.2\"]\nconnect_ports = [9443]\nidle_timeout = \"2s\"\n",
    );
    let silent = silent_origin(&bed.topo.net, "10.77.0.2:9443", Duration::from_secs(15));
    let (status, closed_after) = bed
        .topo
        .client
        .in_thread(|| {
            let mut s = TcpStream::connect(PROXY).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(12)))
                .expect("timeout");
            s.write_all(b"CONNECT 10.77.0.2:9443 HTTP/1.1\r\nHost: 10.77.0.2:9443\r\n\r\n")
                .expect("write");
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap_or(0);
            let t = Instant::now();
            let end = s.read(&mut buf).map(|n| n == 0).unwrap_or(false);
            (status_of(&buf[..n]), end.then(|| t.elapsed()))
        })
        .expect("client thread");
    eprintln!("CONNECT: {status}; tunnel closed by the proxy after {closed_after:?}");
    assert_eq!(status, 200);
    let after = closed_after.expect("the proxy closes the idle tunnel");
    assert!(
        after >= Duration::from_millis(1500) && after < Duration::from_secs(5),
        "{after:?}"
    );
    drop(silent);
}
