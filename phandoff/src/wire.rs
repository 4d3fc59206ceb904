//! The wire format, version 2.
//!
//! Every message starts with `b"PH"`, the version and the message type. Version 1 messages
//! are refused with [`DecodeError::OldVersion`] (callers count them). Fields are big-endian
//! and fixed-size, except the few bounded variable fields (a link's L2 identity, its PAC URL,
//! the list of links), each behind a one-byte length checked against its bound. Parsing never
//! panics and never reads past the input: any input gives `Ok` or a [`DecodeError`].
//! `emit(parse(x)) == x` for every `x` that parses (the fuzz target checks it).

use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"PH";
/// The version this crate speaks.
pub const VERSION: u8 = 2;
/// At most this many links in an advert.
pub const MAX_LINKS: usize = 8;
/// Longest L2 identity (an SSID is at most 32 bytes; a Bluetooth address is 6).
pub const MAX_L2_ID: usize = 32;
/// Longest PAC URL (so that an advert with every bound reached fits one Ethernet frame).
pub const MAX_URL: usize = 96;
/// Length of an AEAD tag (ChaCha20-Poly1305) and of a MAC (keyed BLAKE2s-128).
pub const TAG_LEN: usize = 16;
/// Length of the Noise part of an Initiation: `e` (32), encrypted `s` (32 + 16) and the
/// encrypted 8-byte timestamp (8 + 16).
pub const INIT_NOISE_LEN: usize = 32 + 48 + 24;
/// Length of the Noise part of a Response: `e` (32) and the encrypted empty payload (16).
pub const RESP_NOISE_LEN: usize = 32 + 16;
/// Longest encrypted body of a transport message.
pub const MAX_SEALED: usize = 32 + TAG_LEN;
/// Largest message; adverts with every bound reached stay under it.
pub const MAX_MESSAGE: usize = 1400;

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the message needs.
    Truncated,
    /// Longer than the message (trailing bytes), or longer than [`MAX_MESSAGE`].
    TooLong,
    /// Not `PH`.
    BadMagic,
    /// Protocol version 1 (unauthenticated association): refused.
    OldVersion,
    /// A version this crate does not speak.
    BadVersion,
    /// An unknown message type.
    BadType,
    /// A length or count past its bound, or a value out of range.
    BadField,
}

/// What kind of radio or port a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkKind {
    /// 802.11.
    Wifi = 1,
    /// Bluetooth PAN.
    Bluetooth = 2,
    /// Ethernet.
    Ethernet = 3,
}

impl LinkKind {
    fn from_u8(b: u8) -> Option<LinkKind> {
        match b {
            1 => Some(LinkKind::Wifi),
            2 => Some(LinkKind::Bluetooth),
            3 => Some(LinkKind::Ethernet),
            _ => None,
        }
    }
}

/// One of the HomeSpot's links, as advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// The HomeSpot's index for the link (used in Switch).
    pub index: u8,
    /// What it is.
    pub kind: LinkKind,
    /// SSID or Bluetooth address; at most [`MAX_L2_ID`] bytes.
    pub l2_id: Vec<u8>,
    /// The link's subnet.
    pub subnet: Ipv4Addr,
    /// Its prefix length (0..=32).
    pub prefix: u8,
    /// The HomeSpot's address on the link.
    pub router: Ipv4Addr,
    /// The proxy on this link.
    pub proxy: Ipv4Addr,
    /// The proxy's port.
    pub proxy_port: u16,
    /// The PAC URL; at most [`MAX_URL`] bytes.
    pub pac_url: Vec<u8>,
}

/// The HomeSpot's signed description of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advert {
    /// The HomeSpot's Ed25519 public key.
    pub identity: [u8; 32],
    /// The HomeSpot's static X25519 key for the Noise IK handshake (signed with the rest).
    pub noise_key: [u8; 32],
    /// Increases with every advert the HomeSpot makes (freshness; it restarts at 1 with the
    /// HomeSpot, so it only orders adverts of one run).
    pub epoch: u64,
    /// The global subnet clients' addresses come from.
    pub global_subnet: Ipv4Addr,
    /// Its prefix length.
    pub global_prefix: u8,
    /// The HomeSpot's own global address.
    pub global_addr: Ipv4Addr,
    /// Capability bits (none defined yet).
    pub caps: u32,
    /// Every link; at most [`MAX_LINKS`].
    pub links: Vec<LinkInfo>,
    /// Ed25519 signature over the message up to this field.
    pub signature: [u8; 64],
}

/// A client asks for an advert now (unicast reply, rate-limited per source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Lets the client tell retries apart.
    pub nonce: u64,
}

/// The first handshake message (client -> HomeSpot): Noise IK `-> e, es, s, ss` with the
/// client's timestamp as payload, then WireGuard's two MACs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Initiation {
    /// The client's index for this handshake (the Response names it).
    pub sender: u32,
    /// The Noise message.
    pub noise: [u8; INIT_NOISE_LEN],
    /// Keyed BLAKE2s over the message before it, keyed by the HomeSpot's static key: anyone
    /// can make it, but only someone who read the advert. Checked before any Diffie-Hellman.
    pub mac1: [u8; TAG_LEN],
    /// Keyed BLAKE2s over the message before it, keyed by a cookie the HomeSpot gave this
    /// source address; zeros when the client holds no cookie. Required under load.
    pub mac2: [u8; TAG_LEN],
}

/// The second handshake message (HomeSpot -> client): Noise IK `<- e, ee, se`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The HomeSpot's index for the session (transport messages to it name it).
    pub sender: u32,
    /// The client's index from the Initiation.
    pub receiver: u32,
    /// The Noise message.
    pub noise: [u8; RESP_NOISE_LEN],
    /// Keyed BLAKE2s over the message before it, keyed by the client's static key.
    pub mac1: [u8; TAG_LEN],
    /// Always zeros (clients do not hand out cookies).
    pub mac2: [u8; TAG_LEN],
}

/// The HomeSpot is under load: repeat the Initiation with `mac2` keyed by this cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieReply {
    /// The client's index from the Initiation.
    pub receiver: u32,
    /// XChaCha20-Poly1305 nonce.
    pub nonce: [u8; 24],
    /// The 16-byte cookie and its tag, encrypted under a key from the HomeSpot's static key,
    /// with the Initiation's `mac1` as associated data.
    pub cookie: [u8; 32],
}

/// A message of an established session: the receiver's index, the sender's counter (the
/// AEAD nonce), and the encrypted [`Body`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transport {
    /// The receiver's index for the session.
    pub receiver: u32,
    /// Strictly increasing per sender and session; the AEAD nonce.
    pub counter: u64,
    /// The encrypted body with its tag; 17 to [`MAX_SEALED`] bytes.
    pub sealed: Vec<u8>,
}

/// The HomeSpot does not know the session a client's transport message named (it restarted,
/// or evicted the session). Signed with the HomeSpot's identity so that only it can make a
/// client re-handshake; rate-limited per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownSession {
    /// The index the message named.
    pub receiver: u32,
    /// Its counter (the client checks it is one it sent recently).
    pub counter: u64,
    /// Ed25519 signature over the message before this field.
    pub signature: [u8; 64],
}

/// The plaintext of a transport message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Client -> HomeSpot, the first message of a session: completes the handshake (proof
    /// that the client derived the session keys). Only now does the HomeSpot assign an
    /// address and replace an older session of the same key.
    Confirm,
    /// HomeSpot -> client: the session is in place; this is the client's global address.
    Confirmed {
        /// The client's global address.
        global: Ipv4Addr,
    },
    /// Client -> HomeSpot over the target link: route my global address via `client_addr`.
    Switch {
        /// The target link's index.
        link: u8,
        /// The client's address on the target link.
        client_addr: Ipv4Addr,
    },
    /// HomeSpot -> client: the route now goes over `link`.
    SwitchAck {
        /// The link switched to.
        link: u8,
    },
    /// Liveness probe on a link.
    Probe {
        /// The link it is sent on.
        link: u8,
    },
    /// Answer to a Probe.
    ProbeAck {
        /// The link.
        link: u8,
        /// The counter of the Probe answered.
        probe_seq: u64,
    },
    /// End of the association.
    Bye,
}

const B_CONFIRM: u8 = 1;
const B_CONFIRMED: u8 = 2;
const B_SWITCH: u8 = 3;
const B_SWITCH_ACK: u8 = 4;
const B_PROBE: u8 = 5;
const B_PROBE_ACK: u8 = 6;
const B_BYE: u8 = 7;

impl Body {
    /// Parses a decrypted body; trailing bytes are an error.
    pub fn parse(data: &[u8]) -> Result<Body, DecodeError> {
        let mut r = Reader { b: data };
        let b = match r.u8()? {
            B_CONFIRM => Body::Confirm,
            B_CONFIRMED => Body::Confirmed { global: r.ip()? },
            B_SWITCH => Body::Switch {
                link: r.u8()?,
                client_addr: r.ip()?,
            },
            B_SWITCH_ACK => Body::SwitchAck { link: r.u8()? },
            B_PROBE => Body::Probe { link: r.u8()? },
            B_PROBE_ACK => Body::ProbeAck {
                link: r.u8()?,
                probe_seq: r.u64()?,
            },
            B_BYE => Body::Bye,
            _ => return Err(DecodeError::BadType),
        };
        if !r.b.is_empty() {
            return Err(DecodeError::TooLong);
        }
        Ok(b)
    }

    /// Encodes the body (at most 14 bytes).
    pub fn emit(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(16);
        match *self {
            Body::Confirm => o.push(B_CONFIRM),
            Body::Confirmed { global } => {
                o.push(B_CONFIRMED);
                o.extend_from_slice(&global.octets());
            }
            Body::Switch { link, client_addr } => {
                o.push(B_SWITCH);
                o.push(link);
                o.extend_from_slice(&client_addr.octets());
            }
            Body::SwitchAck { link } => o.extend_from_slice(&[B_SWITCH_ACK, link]),
            Body::Probe { link } => o.extend_from_slice(&[B_PROBE, link]),
            Body::ProbeAck { link, probe_seq } => {
                o.extend_from_slice(&[B_PROBE_ACK, link]);
                o.extend_from_slice(&probe_seq.to_be_bytes());
            }
            Body::Bye => o.push(B_BYE),
        }
        o
    }
}

/// Any message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 1.
    Advert(Advert),
    /// Type 2.
    Query(Query),
    /// Type 3.
    Initiation(Initiation),
    /// Type 4.
    Response(Response),
    /// Type 5.
    CookieReply(CookieReply),
    /// Type 6.
    Transport(Transport),
    /// Type 7.
    UnknownSession(UnknownSession),
}

const T_ADVERT: u8 = 1;
const T_QUERY: u8 = 2;
const T_INITIATION: u8 = 3;
const T_RESPONSE: u8 = 4;
const T_COOKIE: u8 = 5;
const T_TRANSPORT: u8 = 6;
const T_UNKNOWN: u8 = 7;

/// Offset of `mac1` in an Initiation (what it covers).
pub const INIT_MAC1_AT: usize = 4 + 4 + INIT_NOISE_LEN;
/// Offset of `mac1` in a Response.
pub const RESP_MAC1_AT: usize = 4 + 8 + RESP_NOISE_LEN;

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.arr()?))
    }
    fn ip(&mut self) -> Result<Ipv4Addr, DecodeError> {
        Ok(Ipv4Addr::from(self.arr::<4>()?))
    }
    fn prefix(&mut self) -> Result<u8, DecodeError> {
        let p = self.u8()?;
        if p > 32 {
            return Err(DecodeError::BadField);
        }
        Ok(p)
    }
    fn bytes(&mut self, max: usize) -> Result<Vec<u8>, DecodeError> {
        let n = usize::from(self.u8()?);
        if n > max {
            return Err(DecodeError::BadField);
        }
        Ok(self.take(n)?.to_vec())
    }
}

impl Message {
    /// Parses one message; trailing bytes are an error.
    pub fn parse(data: &[u8]) -> Result<Message, DecodeError> {
        if data.len() > MAX_MESSAGE {
            return Err(DecodeError::TooLong);
        }
        let mut r = Reader { b: data };
        if r.arr::<2>()? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        match r.u8()? {
            VERSION => {}
            1 => return Err(DecodeError::OldVersion),
            _ => return Err(DecodeError::BadVersion),
        }
        let m = match r.u8()? {
            T_ADVERT => {
                let identity = r.arr()?;
                let noise_key = r.arr()?;
                let epoch = r.u64()?;
                let global_subnet = r.ip()?;
                let global_prefix = r.prefix()?;
                let global_addr = r.ip()?;
                let caps = r.u32()?;
                let n = usize::from(r.u8()?);
                if n > MAX_LINKS {
                    return Err(DecodeError::BadField);
                }
                let mut links = Vec::with_capacity(n);
                for _ in 0..n {
                    links.push(LinkInfo {
                        index: r.u8()?,
                        kind: LinkKind::from_u8(r.u8()?).ok_or(DecodeError::BadField)?,
                        l2_id: r.bytes(MAX_L2_ID)?,
                        subnet: r.ip()?,
                        prefix: r.prefix()?,
                        router: r.ip()?,
                        proxy: r.ip()?,
                        proxy_port: r.u16()?,
                        pac_url: r.bytes(MAX_URL)?,
                    });
                }
                Message::Advert(Advert {
                    identity,
                    noise_key,
                    epoch,
                    global_subnet,
                    global_prefix,
                    global_addr,
                    caps,
                    links,
                    signature: r.arr()?,
                })
            }
            T_QUERY => Message::Query(Query { nonce: r.u64()? }),
            T_INITIATION => Message::Initiation(Initiation {
                sender: r.u32()?,
                noise: r.arr()?,
                mac1: r.arr()?,
                mac2: r.arr()?,
            }),
            T_RESPONSE => Message::Response(Response {
                sender: r.u32()?,
                receiver: r.u32()?,
                noise: r.arr()?,
                mac1: r.arr()?,
                mac2: r.arr()?,
            }),
            T_COOKIE => Message::CookieReply(CookieReply {
                receiver: r.u32()?,
                nonce: r.arr()?,
                cookie: r.arr()?,
            }),
            T_TRANSPORT => {
                let receiver = r.u32()?;
                let counter = r.u64()?;
                let n = r.b.len();
                if !(TAG_LEN + 1..=MAX_SEALED).contains(&n) {
                    return Err(DecodeError::BadField);
                }
                Message::Transport(Transport {
                    receiver,
                    counter,
                    sealed: r.take(n)?.to_vec(),
                })
            }
            T_UNKNOWN => Message::UnknownSession(UnknownSession {
                receiver: r.u32()?,
                counter: r.u64()?,
                signature: r.arr()?,
            }),
            _ => return Err(DecodeError::BadType),
        };
        if !r.b.is_empty() {
            return Err(DecodeError::TooLong);
        }
        Ok(m)
    }

    /// Encodes the message. Fields past their bounds are cut to the bound (the bounds are
    /// enforced where messages are built, so this does not happen in practice).
    pub fn emit(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(160);
        o.extend_from_slice(&MAGIC);
        o.push(VERSION);
        match self {
            Message::Advert(a) => {
                o.push(T_ADVERT);
                emit_advert_signed_part(a, &mut o);
                o.extend_from_slice(&a.signature);
            }
            Message::Query(q) => {
                o.push(T_QUERY);
                o.extend_from_slice(&q.nonce.to_be_bytes());
            }
            Message::Initiation(m) => {
                o.push(T_INITIATION);
                o.extend_from_slice(&m.sender.to_be_bytes());
                o.extend_from_slice(&m.noise);
                o.extend_from_slice(&m.mac1);
                o.extend_from_slice(&m.mac2);
            }
            Message::Response(m) => {
                o.push(T_RESPONSE);
                o.extend_from_slice(&m.sender.to_be_bytes());
                o.extend_from_slice(&m.receiver.to_be_bytes());
                o.extend_from_slice(&m.noise);
                o.extend_from_slice(&m.mac1);
                o.extend_from_slice(&m.mac2);
            }
            Message::CookieReply(m) => {
                o.push(T_COOKIE);
                o.extend_from_slice(&m.receiver.to_be_bytes());
                o.extend_from_slice(&m.nonce);
                o.extend_from_slice(&m.cookie);
            }
            Message::Transport(m) => {
                o.push(T_TRANSPORT);
                o.extend_from_slice(&m.receiver.to_be_bytes());
                o.extend_from_slice(&m.counter.to_be_bytes());
                o.extend_from_slice(&m.sealed[..m.sealed.len().min(MAX_SEALED)]);
            }
            Message::UnknownSession(m) => {
                emit_unknown_signed_part(m, &mut o);
                o.extend_from_slice(&m.signature);
            }
        }
        o
    }
}

fn put_bytes(o: &mut Vec<u8>, b: &[u8], max: usize) {
    let b = &b[..b.len().min(max)];
    o.push(b.len() as u8);
    o.extend_from_slice(b);
}

fn emit_advert_signed_part(a: &Advert, o: &mut Vec<u8>) {
    o.extend_from_slice(&a.identity);
    o.extend_from_slice(&a.noise_key);
    o.extend_from_slice(&a.epoch.to_be_bytes());
    o.extend_from_slice(&a.global_subnet.octets());
    o.push(a.global_prefix.min(32));
    o.extend_from_slice(&a.global_addr.octets());
    o.extend_from_slice(&a.caps.to_be_bytes());
    let links = &a.links[..a.links.len().min(MAX_LINKS)];
    o.push(links.len() as u8);
    for l in links {
        o.push(l.index);
        o.push(l.kind as u8);
        put_bytes(o, &l.l2_id, MAX_L2_ID);
        o.extend_from_slice(&l.subnet.octets());
        o.push(l.prefix.min(32));
        o.extend_from_slice(&l.router.octets());
        o.extend_from_slice(&l.proxy.octets());
        o.extend_from_slice(&l.proxy_port.to_be_bytes());
        put_bytes(o, &l.pac_url, MAX_URL);
    }
}

fn emit_unknown_signed_part(m: &UnknownSession, o: &mut Vec<u8>) {
    o.push(T_UNKNOWN);
    o.extend_from_slice(&m.receiver.to_be_bytes());
    o.extend_from_slice(&m.counter.to_be_bytes());
}

fn header() -> Vec<u8> {
    let mut o = Vec::with_capacity(160);
    o.extend_from_slice(&MAGIC);
    o.push(VERSION);
    o
}

/// Whether `data` claims to be a transport message (a cheap look at the header, for
/// queueing; parsing decides).
pub fn is_transport(data: &[u8]) -> bool {
    data.len() > 4 && data[..2] == MAGIC && data[2] == VERSION && data[3] == T_TRANSPORT
}

/// The bytes an advert's signature covers: the whole message before the signature.
pub fn advert_signed_bytes(a: &Advert) -> Vec<u8> {
    let mut o = header();
    o.push(T_ADVERT);
    emit_advert_signed_part(a, &mut o);
    o
}

/// The bytes an UnknownSession's signature covers.
pub fn unknown_signed_bytes(m: &UnknownSession) -> Vec<u8> {
    let mut o = header();
    emit_unknown_signed_part(m, &mut o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn advert() -> Advert {
        Advert {
            identity: [7; 32],
            noise_key: [8; 32],
            epoch: 42,
            global_subnet: Ipv4Addr::new(10, 200, 0, 0),
            global_prefix: 24,
            global_addr: Ipv4Addr::new(10, 200, 0, 1),
            caps: 0,
            links: vec![LinkInfo {
                index: 0,
                kind: LinkKind::Wifi,
                l2_id: b"homespot".to_vec(),
                subnet: Ipv4Addr::new(10, 77, 1, 0),
                prefix: 24,
                router: Ipv4Addr::new(10, 77, 1, 1),
                proxy: Ipv4Addr::new(10, 77, 1, 1),
                proxy_port: 3128,
                pac_url: b"http://10.77.1.1/wpad.dat".to_vec(),
            }],
            signature: [9; 64],
        }
    }

    #[test]
    fn every_message_round_trips() {
        let all = [
            Message::Advert(advert()),
            Message::Query(Query { nonce: 3 }),
            Message::Initiation(Initiation {
                sender: 5,
                noise: [1; INIT_NOISE_LEN],
                mac1: [2; TAG_LEN],
                mac2: [3; TAG_LEN],
            }),
            Message::Response(Response {
                sender: 6,
                receiver: 5,
                noise: [4; RESP_NOISE_LEN],
                mac1: [5; TAG_LEN],
                mac2: [0; TAG_LEN],
            }),
            Message::CookieReply(CookieReply {
                receiver: 5,
                nonce: [6; 24],
                cookie: [7; 32],
            }),
            Message::Transport(Transport {
                receiver: 6,
                counter: 9,
                sealed: vec![8; 18],
            }),
            Message::UnknownSession(UnknownSession {
                receiver: 6,
                counter: 9,
                signature: [1; 64],
            }),
        ];
        for m in all {
            let b = m.emit();
            assert!(b.len() <= MAX_MESSAGE);
            assert_eq!(Message::parse(&b), Ok(m.clone()));
            // Every strict prefix is refused, never a panic (a transport message's body is
            // variable: its prefixes down to the shortest body are other transport messages).
            let shortest = match m {
                Message::Transport(_) => 4 + 12 + TAG_LEN + 1,
                _ => b.len(),
            };
            for n in 0..shortest {
                assert!(Message::parse(&b[..n]).is_err(), "{m:?} cut at {n}");
            }
            if !matches!(m, Message::Transport(_)) {
                let mut longer = b.clone();
                longer.push(0);
                assert_eq!(Message::parse(&longer), Err(DecodeError::TooLong));
            }
        }
        let init = Message::Initiation(Initiation {
            sender: 1,
            noise: [0; INIT_NOISE_LEN],
            mac1: [0; TAG_LEN],
            mac2: [0; TAG_LEN],
        });
        assert_eq!(init.emit().len(), INIT_MAC1_AT + 2 * TAG_LEN);
    }

    #[test]
    fn bodies_round_trip() {
        let all = [
            Body::Confirm,
            Body::Confirmed {
                global: Ipv4Addr::new(10, 200, 0, 9),
            },
            Body::Switch {
                link: 1,
                client_addr: Ipv4Addr::new(10, 77, 2, 100),
            },
            Body::SwitchAck { link: 1 },
            Body::Probe { link: 2 },
            Body::ProbeAck {
                link: 2,
                probe_seq: 77,
            },
            Body::Bye,
        ];
        for b in all {
            let e = b.emit();
            assert!(e.len() + TAG_LEN <= MAX_SEALED);
            assert_eq!(Body::parse(&e), Ok(b));
            for n in 0..e.len() {
                assert!(Body::parse(&e[..n]).is_err());
            }
        }
        assert_eq!(Body::parse(&[99]), Err(DecodeError::BadType));
    }

    #[test]
    fn bounds_are_enforced() {
        let mut b = Message::Advert(advert()).emit();
        // The link count byte sits after header(4) + 32 + 32 + 8 + 4 + 1 + 4 + 4.
        b[89] = (MAX_LINKS + 1) as u8;
        assert_eq!(Message::parse(&b), Err(DecodeError::BadField));
        let mut b = Message::Advert(advert()).emit();
        b[4 + 32 + 32 + 8 + 4] = 33;
        assert_eq!(Message::parse(&b), Err(DecodeError::BadField));
        assert_eq!(Message::parse(b"XX\x02\x02"), Err(DecodeError::BadMagic));
        assert_eq!(Message::parse(b"PH\x03\x02"), Err(DecodeError::BadVersion));
        assert_eq!(Message::parse(b"PH\x02\x63"), Err(DecodeError::BadType));
        assert_eq!(
            Message::parse(&[0u8; MAX_MESSAGE + 1]),
            Err(DecodeError::TooLong)
        );
        let mut t = b"PH\x02\x06".to_vec();
        t.extend_from_slice(&[0; 12]);
        t.extend_from_slice(&[0; MAX_SEALED + 1]);
        assert_eq!(Message::parse(&t), Err(DecodeError::BadField));
    }

    #[test]
    fn version_1_is_refused_as_such() {
        // A v1 Associate: header, client key, nonce.
        let mut v1 = b"PH\x01\x03".to_vec();
        v1.extend_from_slice(&[0; 48]);
        assert_eq!(Message::parse(&v1), Err(DecodeError::OldVersion));
    }

    #[test]
    fn the_maximal_advert_fits() {
        let mut a = advert();
        let l = a.links[0].clone();
        a.links = vec![
            LinkInfo {
                l2_id: vec![b'x'; MAX_L2_ID],
                pac_url: vec![b'u'; MAX_URL],
                ..l
            };
            MAX_LINKS
        ];
        let b = Message::Advert(a.clone()).emit();
        assert!(b.len() <= MAX_MESSAGE, "{}", b.len());
        assert_eq!(Message::parse(&b), Ok(Message::Advert(a)));
    }
}
