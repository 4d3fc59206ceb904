//! Discovery on one link: a P-Handoff Query for a HomeSpot and, at the same time, WPAD by
//! DHCPINFORM; then the PAC file is fetched (or taken from the cache for that network) and
//! loaded into a sandboxed evaluator. A HomeSpot's signed advert wins over WPAD when the
//! agent trusts it on this network ([`crate::trust`]): on a pinned network discovery waits
//! (within the query timeout) for the pinned identity rather than taking whoever answers
//! first; on a never-seen one only an advert from the link's router/DHCP server counts, and
//! it is not pinned here: a datagram's source address proves nothing (any device on the link
//! can write the router's), so the manager pins it once a handshake with it, sent to that
//! address, has completed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use phandoff::driver::PORT;
use phandoff::wire::{Advert, Message, Query};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

use crate::config::Discovery as Settings;
use crate::inform::{inform, InformReply};
use crate::pac::PacHandle;
use crate::trust::{Trust, Verdict};

/// A HomeSpot identity that answered on the link and was not used.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its identity.
    pub identity: [u8; 32],
    /// Its advert's source address.
    pub from: Ipv4Addr,
    /// Why: [`Verdict::Mismatch`] (the network is pinned to another) or
    /// [`Verdict::NotRouter`] / [`Verdict::Undecided`] (not vouched for by the network).
    pub verdict: Verdict,
}

/// What a link turned out to be.
pub enum Found {
    /// A HomeSpot trusted on this network (its advert, verified).
    HomeSpot {
        /// The advert.
        advert: Box<Advert>,
        /// First use (a never-seen network, from the link's router): to be pinned once the
        /// handshake with it completes.
        first_use: bool,
        /// Other HomeSpots that answered first and were not trusted here.
        refused: Vec<Refused>,
    },
    /// Any other network.
    Plain {
        /// HomeSpots that answered and were not trusted here.
        refused: Vec<Refused>,
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
    /// When the link came up (this connection of it): a HomeSpot resting on its network since
    /// before then is tried here ([`crate::trust::rest`]).
    pub up_at: std::time::Instant,
}

/// At most this many distinct adverts are considered per discovery.
const MAX_ADVERTS: usize = 8;

/// Sends a Query on `t` (again every third of `wait`) and passes every genuinely signed
/// advert, with its source address, to `out` until `wait` is over.
async fn query(t: &Target, wait: Duration, out: mpsc::Sender<(Advert, Ipv4Addr)>) {
    let Some(sock) = query_socket(t) else {
        return;
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = vec![0u8; phandoff::wire::MAX_MESSAGE + 1];
    let mut next_query = tokio::time::Instant::now();
    let mut nonce = 0u64;
    loop {
        if tokio::time::Instant::now() >= next_query {
            nonce += 1;
            let q = Message::Query(Query { nonce }).emit();
            let _ = sock
                .send_to(&q, std::net::SocketAddrV4::new(Ipv4Addr::BROADCAST, PORT))
                .await;
            next_query += wait / 3;
        }
        let until = next_query.min(deadline);
        match tokio::time::timeout_at(until, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, SocketAddr::V4(from)))) => {
                if let Ok(Message::Advert(a)) = Message::parse(&buf[..n]) {
                    if phandoff::crypto::advert_is_genuine(&a)
                        && out.send((a, *from.ip())).await.is_err()
                    {
                        return;
                    }
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return,
            Err(_) if tokio::time::Instant::now() >= deadline => return,
            Err(_) => {}
        }
    }
}

fn query_socket(t: &Target) -> Option<tokio::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).ok()?;
    s.set_broadcast(true).ok()?;
    s.bind_device(Some(t.ifname.as_bytes())).ok()?;
    s.set_nonblocking(true).ok()?;
    s.bind(&SocketAddr::from((t.addr, 0)).into()).ok()?;
    tokio::net::UdpSocket::from_std(s.into()).ok()
}

/// The addresses the network's DHCP answer vouches for: its server and its router.
fn vouched(r: &Result<InformReply, std::io::Error>) -> Vec<Ipv4Addr> {
    match r {
        Ok(r) => r.server.into_iter().chain(r.router).collect(),
        Err(_) => vec![],
    }
}

/// Judges one advert met on `t`; a refusal is recorded with the trust store (for `trust`).
fn judge(
    tr: &mut Trust,
    t: &Target,
    a: &Advert,
    src: Ipv4Addr,
    vouched: Option<&[Ipv4Addr]>,
) -> Option<Verdict> {
    let ours = a
        .links
        .iter()
        .find(|l| crate::links::same_subnet(l.subnet, t.addr, l.prefix))?;
    let v = tr.judge(a, ours, src, vouched);
    let v = tr.check_now(
        v,
        &a.identity,
        ours.router,
        std::time::Instant::now(),
        t.up_at,
    );
    if let Verdict::Mismatch { pinned } = v {
        tr.conflict(a, pinned);
    }
    Some(v)
}

/// The adverts still coming in a Query's window, each (identity, source) judged once and at
/// most [`MAX_ADVERTS`] of them.
struct Answers {
    t: Target,
    arx: mpsc::Receiver<(Advert, Ipv4Addr)>,
    trust: Arc<Mutex<Trust>>,
    /// The link's router and DHCP server, as its DHCP answer named them.
    vouched: Vec<Ipv4Addr>,
    reported: Vec<([u8; 32], Ipv4Addr)>,
}

impl Answers {
    /// The next advert not seen before, other than `used`'s, with its verdict; `None` once the
    /// window is over.
    async fn next(
        &mut self,
        used: Option<[u8; 32]>,
    ) -> Option<(Advert, Ipv4Addr, Option<Verdict>)> {
        loop {
            let (a, src) = self.arx.recv().await?;
            if used == Some(a.identity)
                || self.reported.contains(&(a.identity, src))
                || self.reported.len() >= MAX_ADVERTS
            {
                continue;
            }
            self.reported.push((a.identity, src));
            let v = {
                let mut tr = self.trust.lock().unwrap_or_else(|p| p.into_inner());
                judge(&mut tr, &self.t, &a, src, Some(&self.vouched))
            };
            return Some((a, src, v));
        }
    }
}

/// Late answers: the Query keeps running to its end after a trusted HomeSpot (`used`) was
/// chosen, so that a rogue answering after the real one is reported all the same (to `late`).
fn report_late(mut answers: Answers, used: [u8; 32], late: mpsc::Sender<(String, Refused)>) {
    tokio::spawn(async move {
        while let Some((a, src, v)) = answers.next(Some(used)).await {
            if let Some(verdict) = v.filter(|v| !matches!(v, Verdict::Use | Verdict::PinAndUse)) {
                let r = Refused {
                    identity: a.identity,
                    from: src,
                    verdict,
                };
                if late.send((answers.t.ifname.clone(), r)).await.is_err() {
                    return;
                }
            }
        }
    });
}

/// The shortest wait for a HomeSpot's answer after the INFORM's, on a network no HomeSpot is
/// pinned to (the HomeSpot answers a Query as fast as its DHCP server answers an INFORM).
const GRACE_MIN: Duration = Duration::from_millis(5);

/// The rest of a Query's window after discovery went on without a HomeSpot (a never-seen
/// network whose DHCP server answered, and no HomeSpot within the grace after it): the link
/// is used as a plain network at once, and a trusted HomeSpot that answers in the rest of the
/// window still makes it a HomeSpot link ([`Pending::upgrade`]).
pub struct Pending {
    answers: Answers,
    q: tokio::task::JoinHandle<()>,
    late: mpsc::Sender<(String, Refused)>,
}

impl Pending {
    /// Waits for the rest of the Query's window: a HomeSpot trusted on this link (or met from
    /// the network's router, first use) as [`Found::HomeSpot`], else `None`.
    /// HomeSpots refused meanwhile go to `late`.
    pub async fn upgrade(mut self) -> Option<Found> {
        let mut refused = vec![];
        while let Some((a, src, v)) = self.answers.next(None).await {
            match v {
                None | Some(Verdict::Undecided) => {}
                Some(Verdict::Use) | Some(Verdict::PinAndUse) => {
                    self.q.abort();
                    refused.retain(|r: &Refused| r.identity != a.identity);
                    return Some(Found::HomeSpot {
                        first_use: v == Some(Verdict::PinAndUse),
                        advert: Box::new(a),
                        refused,
                    });
                }
                Some(verdict) => refused.push(Refused {
                    identity: a.identity,
                    from: src,
                    verdict,
                }),
            }
        }
        for r in refused {
            if self
                .late
                .send((self.answers.t.ifname.clone(), r))
                .await
                .is_err()
            {
                break;
            }
        }
        None
    }
}

/// Whether a HomeSpot is pinned to the network whose DHCP answer is `r` (its router is a
/// pinned HomeSpot's address): discovery then waits the whole Query window for it.
fn pinned_network(trust: &Arc<Mutex<Trust>>, r: &InformReply) -> bool {
    let Some(router) = r.router.or(r.server) else {
        return false;
    };
    let tr = trust.lock().unwrap_or_else(|p| p.into_inner());
    tr.pins().iter().any(|(_, n)| n.router == router)
}

/// What [`homespot_or_inform`] decided.
struct Decision {
    advert: Option<(Advert, bool)>,
    refused: Vec<Refused>,
    inform: Option<Result<InformReply, std::io::Error>>,
    pending: Option<Pending>,
}

/// Runs the Query and the INFORM together and decides, as answers arrive, whether a HomeSpot
/// is trusted on this link. Returns the advert to use (and whether it was pinned just now),
/// what was refused, and the INFORM's answer if it came. Answers after the decision go to
/// `late`; on a never-seen network the rest of the Query's window is handed back as
/// [`Pending`].
async fn homespot_or_inform(
    t: &Target,
    s: &Settings,
    trust: &Arc<Mutex<Trust>>,
    late: &mpsc::Sender<(String, Refused)>,
    cache: &PacCache,
) -> Decision {
    let started = tokio::time::Instant::now();
    let mut plain_at: Option<tokio::time::Instant> = None;
    let (atx, mut arx) = mpsc::channel(16);
    let mut q = tokio::spawn({
        let t = t.clone();
        let wait = s.query_timeout;
        async move { query(&t, wait, atx).await }
    });
    let i = inform(
        &t.ifname,
        t.addr,
        t.mac,
        t.server,
        s.inform_timeout,
        s.inform_tries,
    );
    tokio::pin!(i);
    let mut seen: Vec<(Advert, Ipv4Addr)> = vec![];
    let mut inform_result = None;
    let mut q_done = false;
    loop {
        let v = inform_result.as_ref().map(vouched);
        let mut refused = vec![];
        let mut chosen: Option<(Advert, bool)> = None;
        {
            let mut tr = trust.lock().unwrap_or_else(|p| p.into_inner());
            for (a, src) in &seen {
                match judge(&mut tr, t, a, *src, v.as_deref()) {
                    None | Some(Verdict::Undecided) if chosen.is_none() => {}
                    Some(Verdict::Use) if chosen.is_none() => chosen = Some((a.clone(), false)),
                    Some(Verdict::PinAndUse) if chosen.is_none() => {
                        chosen = Some((a.clone(), true))
                    }
                    Some(verdict)
                        if chosen
                            .as_ref()
                            .is_none_or(|(c, _)| c.identity != a.identity) =>
                    {
                        refused.push(Refused {
                            identity: a.identity,
                            from: *src,
                            verdict,
                        });
                    }
                    Some(_) => {}
                    None => {}
                }
            }
        }
        if let Some((a, first_use)) = chosen {
            let reported = seen.iter().map(|(x, f)| (x.identity, *f)).collect();
            refused.retain(|r| r.identity != a.identity);
            let answers = Answers {
                t: t.clone(),
                arx,
                trust: trust.clone(),
                vouched: vec![],
                reported,
            };
            report_late(answers, a.identity, late.clone());
            return Decision {
                advert: Some((a, first_use)),
                refused,
                inform: inform_result,
                pending: None,
            };
        }
        if q_done && inform_result.is_some() {
            return Decision {
                advert: None,
                refused,
                inform: inform_result,
                pending: None,
            };
        }
        if plain_at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            let vouched = inform_result.as_ref().map(vouched).unwrap_or_default();
            let reported = seen.iter().map(|(x, f)| (x.identity, *f)).collect();
            return Decision {
                advert: None,
                refused,
                inform: inform_result,
                pending: Some(Pending {
                    answers: Answers {
                        t: t.clone(),
                        arx,
                        trust: trust.clone(),
                        vouched,
                        reported,
                    },
                    q,
                    late: late.clone(),
                }),
            };
        }
        // A network whose PAC file we fetched a short while ago was a plain network then:
        // unless a HomeSpot answered already, the rest of the Query's window is not waited for
        // (a HomeSpot that appeared there since is found at the next discovery, once the
        // cached PAC has aged out). Not on a network a HomeSpot is pinned to: one resting
        // there (`trust::rest`) is tried again by a discovery that must hear it.
        if let (Some(Ok(r)), true) = (&inform_result, seen.is_empty()) {
            let pinned = pinned_network(trust, r);
            let key = network_key(r, t);
            let known = cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&key)
                .is_some_and(|(u, _, at)| {
                    Some(u) == r.wpad.as_ref() && at.elapsed() < s.pac_max_age
                });
            if known && !pinned {
                q.abort();
                return Decision {
                    advert: None,
                    refused,
                    inform: inform_result,
                    pending: None,
                };
            }
        }
        let plain_wait = plain_at.map(tokio::time::sleep_until);
        tokio::select! {
            Some((a, src)) = arx.recv() => {
                if seen.len() < MAX_ADVERTS
                    && !seen.iter().any(|(x, f)| x.identity == a.identity && *f == src)
                {
                    seen.push((a, src));
                }
            }
            _ = &mut q, if !q_done => {
                q_done = true;
                while let Ok((a, src)) = arx.try_recv() {
                    if seen.len() < MAX_ADVERTS
                        && !seen.iter().any(|(x, f)| x.identity == a.identity && *f == src)
                    {
                        seen.push((a, src));
                    }
                }
            }
            r = &mut i, if inform_result.is_none() => {
                let never_seen = matches!(&r, Ok(r) if !pinned_network(trust, r));
                inform_result = Some(r);
                if never_seen {
                    let grace = started.elapsed().max(GRACE_MIN);
                    plain_at = Some(tokio::time::Instant::now() + grace);
                }
            }
            _ = async { if let Some(w) = plain_wait { w.await } }, if plain_at.is_some() => {}
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
/// (the caller installs the link's routing table there). A plain answer may come with the
/// rest of the Query's window ([`Pending`]), in which a HomeSpot may still answer.
pub async fn discover<F, Fut>(
    t: Target,
    s: Settings,
    cache: PacCache,
    trust: Arc<Mutex<Trust>>,
    late: mpsc::Sender<(String, Refused)>,
    before_fetch: F,
) -> (Found, Option<Pending>)
where
    F: FnOnce(Option<InformReply>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let d = homespot_or_inform(&t, &s, &trust, &late, &cache).await;
    let (refused, inform_result) = (d.refused, d.inform);
    if let Some((a, first_use)) = d.advert {
        return (
            Found::HomeSpot {
                advert: Box::new(a),
                first_use,
                refused,
            },
            None,
        );
    }
    let found = plain(t, s, cache, refused, inform_result, before_fetch).await;
    (found, d.pending)
}

/// The rest of discovery on a link without a HomeSpot: WPAD's URL, the PAC file (fetched or
/// cached), its evaluator.
async fn plain<F, Fut>(
    t: Target,
    s: Settings,
    cache: PacCache,
    refused: Vec<Refused>,
    inform_result: Option<Result<InformReply, std::io::Error>>,
    before_fetch: F,
) -> Found
where
    F: FnOnce(Option<InformReply>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(r) = inform_result else {
        return Found::Plain {
            refused,
            inform: None,
            pac: None,
            wpad: None,
            cached: false,
            note: Some("no DHCP answer; going DIRECT".into()),
        };
    };
    let reply = match r {
        Ok(r) => r,
        Err(e) => {
            before_fetch(None).await;
            return Found::Plain {
                refused,
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
            refused,
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
                    refused,
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
            refused,
            inform: Some(reply),
            pac: Some(p),
            wpad: Some(url),
            cached,
            note: None,
        },
        Err(e) => Found::Plain {
            refused,
            inform: Some(reply),
            pac: None,
            wpad: Some(url),
            cached,
            note: Some(format!("{e}; going DIRECT")),
        },
    }
}
