//! Discovery on one link: a P-Handoff Query for a HomeSpot and, at the same time, WPAD by
//! DHCPINFORM; then the PAC file is fetched (or taken from the cache for that network) and
//! loaded into a sandboxed evaluator. A HomeSpot's signed advert wins over WPAD.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phandoff::client::{Client, ClientConfig, ClientEvent};
use phandoff::crypto::ClientKeys;
use phandoff::driver::PORT;
use phandoff::endpoint::Dest;
use phandoff::wire::Advert;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::Discovery as Settings;
use crate::inform::{inform, InformReply};
use crate::pac::PacHandle;

/// What a link turned out to be.
pub enum Found {
    /// A HomeSpot (its advert, verified).
    HomeSpot(Box<Advert>),
    /// Any other network.
    Plain {
        /// The DHCP server's answer, if any.
        inform: Option<InformReply>,
        /// The PAC evaluator, if WPAD gave a URL and the file loaded.
        pac: Option<PacHandle>,
        /// The PAC URL.
        wpad: Option<String>,
        /// Whether the PAC text came from the cache.
        cached: bool,
        /// What went wrong on the way, for logs.
        note: Option<String>,
    },
}

/// PAC files by network (`server/subnet`), with when they were fetched.
pub type PacCache = Arc<Mutex<HashMap<String, (String, String, Instant)>>>;

/// The link to examine.
#[derive(Debug, Clone)]
pub struct Target {
    /// Interface name.
    pub ifname: String,
    /// Its index.
    pub index: u32,
    /// Hardware address.
    pub mac: [u8; 6],
    /// Its address and prefix.
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The link's DHCP server, when an earlier answer named it (the INFORM goes to it unicast).
    pub server: Option<Ipv4Addr>,
}

/// Sends a Query on `t` and waits up to `wait` for a verified advert.
async fn query(t: &Target, wait: Duration) -> Option<Advert> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
    s.set_broadcast(true).ok()?;
    s.bind_device(Some(t.ifname.as_bytes())).ok()?;
    s.set_nonblocking(true).ok()?;
    s.bind(&SocketAddr::from((t.addr, 0)).into()).ok()?;
    let sock = tokio::net::UdpSocket::from_std(s.into()).ok()?;
    let seed = crate::state::random32().ok()?;
    // A throwaway client: it only checks the advert's signature.
    let mut c = Client::new(
        ClientConfig::default(),
        ClientKeys::from_secret(seed),
        None,
        seed,
        PORT,
    );
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; phandoff::wire::MAX_MESSAGE + 1];
    let mut next_query = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_query {
            c.query(0);
            while let Some(tx) = c.poll_transmit() {
                let to = match tx.to {
                    Dest::Broadcast => std::net::SocketAddrV4::new(Ipv4Addr::BROADCAST, PORT),
                    Dest::Unicast(a) => a,
                };
                let _ = sock.send_to(&tx.payload, to).await;
            }
            next_query += wait / 3;
        }
        let until = next_query.min(deadline);
        match tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => {
                c.handle_datagram(phandoff::endpoint::Instant(0), 0, &buf[..n]);
                while let Some(e) = c.poll_event() {
                    if let ClientEvent::Discovered { advert } = e {
                        return Some(advert);
                    }
                }
            }
            Ok(Err(_)) => return None,
            Err(_) if tokio::time::Instant::now() >= deadline => return None,
            Err(_) => {}
        }
    }
}

fn network_key(r: &InformReply, t: &Target) -> String {
    let net = crate::links::network(t.addr, t.prefix);
    format!(
        "{}/{net}/{}",
        r.server.map(|s| s.to_string()).unwrap_or_default(),
        t.prefix
    )
}

/// Examines `t`. `before_fetch` runs once the INFORM answered and before the PAC is fetched
/// (the caller installs the link's routing table there).
pub async fn discover<F, Fut>(t: Target, s: Settings, cache: PacCache, before_fetch: F) -> Found
where
    F: FnOnce(Option<InformReply>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let q = query(&t, s.query_timeout);
    let i = inform(
        &t.ifname,
        t.addr,
        t.mac,
        t.server,
        s.inform_timeout,
        s.inform_tries,
    );
    tokio::pin!(q, i);
    let mut inform_result = None;
    // The advert wins if it comes; a plain network's INFORM answer waits for the query.
    let advert = tokio::select! {
        a = &mut q => a,
        r = &mut i => {
            inform_result = Some(r);
            q.await
        }
    };
    if let Some(a) = advert {
        return Found::HomeSpot(Box::new(a));
    }
    let r = match inform_result {
        Some(r) => r,
        None => i.await,
    };
    let reply = match r {
        Ok(r) => r,
        Err(e) => {
            before_fetch(None).await;
            return Found::Plain {
                inform: None,
                pac: None,
                wpad: None,
                cached: false,
                note: Some(format!("{e}; going DIRECT")),
            };
        }
    };
    before_fetch(Some(reply.clone())).await;
    let Some(url) = reply.wpad.clone() else {
        return Found::Plain {
            inform: Some(reply),
            pac: None,
            wpad: None,
            cached: false,
            note: Some("no WPAD URL (option 252); going DIRECT".into()),
        };
    };
    let key = network_key(&reply, &t);
    let hit = {
        let c = cache.lock().unwrap_or_else(|p| p.into_inner());
        c.get(&key)
            .filter(|(u, _, at)| *u == url && at.elapsed() < s.pac_max_age)
            .map(|(_, text, _)| text.clone())
    };
    let (text, cached) = match hit {
        Some(text) => (text, true),
        None => match crate::fetch::get_text(&url, t.addr, Duration::from_secs(3)).await {
            Ok(text) => {
                let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
                c.insert(key, (url.clone(), text.clone(), Instant::now()));
                (text, false)
            }
            Err(e) => {
                return Found::Plain {
                    inform: Some(reply),
                    pac: None,
                    wpad: Some(url),
                    cached: false,
                    note: Some(format!("{e}; going DIRECT")),
                }
            }
        },
    };
    match PacHandle::load(&text, t.addr, s.pac) {
        Ok(p) => Found::Plain {
            inform: Some(reply),
            pac: Some(p),
            wpad: Some(url),
            cached,
            note: None,
        },
        Err(e) => Found::Plain {
            inform: Some(reply),
            pac: None,
            wpad: Some(url),
            cached,
            note: Some(format!("{e}; going DIRECT")),
        },
    }
}
