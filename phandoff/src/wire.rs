//! The wire format, version 1.
//!
//! Every message starts with `b"PH"`, the version and the message type. Fields are big-endian
//! and fixed-size, except the few bounded variable fields (a link's L2 identity, its PAC URL,
//! the list of links), each behind a one-byte length checked against its bound. Parsing never
//! panics and never reads past the input: any input gives `Ok` or a [`DecodeError`].
//! `emit(parse(x)) == x` for every `x` that parses (the fuzz target checks it).

use alloc::vec::Vec;
use core::net::Ipv4Addr;

/// The first two bytes of every message.
pub const MAGIC: [u8; 2] = *b"PH";
/// The version this crate speaks.
pub const VERSION: u8 = 1;
/// At most this many links in an advert.
pub const MAX_LINKS: usize = 8;
/// Longest L2 identity (an SSID is at most 32 bytes; a Bluetooth address is 6).
pub const MAX_L2_ID: usize = 32;
/// Longest PAC URL (so that an advert with every bound reached fits one Ethernet frame).
pub const MAX_URL: usize = 96;
/// Length of an authentication tag (HMAC-SHA256, truncated).
pub const TAG_LEN: usize = 16;
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
    /// Increases with every advert the HomeSpot makes (freshness).
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

/// A client asks for an advert now (unicast reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    /// Echoed nowhere; lets the client tell retries apart.
    pub nonce: u64,
}

/// A client asks for a global address and a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Associate {
    /// The client's long-lived X25519 public key: its identity towards the HomeSpot.
    pub client_key: [u8; 32],
    /// Fresh per attempt.
    pub nonce: [u8; 16],
}

/// The HomeSpot's answer to Associate, signed with its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssociateAck {
    /// The session every later message names.
    pub session: u64,
    /// The client key this answers.
    pub client_key: [u8; 32],
    /// The client's global address.
    pub global_addr: Ipv4Addr,
    /// The HomeSpot's ephemeral X25519 public key for this session.
    pub ephemeral: [u8; 32],
    /// Fresh per session.
    pub nonce: [u8; 16],
    /// Ed25519 signature over the message up to this field, followed by the client's nonce.
    pub signature: [u8; 64],
}

/// The body of an authenticated (sealed) message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedBody {
    /// Client -> HomeSpot over the target link: route my global address via `client_addr`.
    Switch {
        /// The target link's index.
        link: u8,
        /// The client's global address (must be the session's).
        global: Ipv4Addr,
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
        /// The sequence number of the Probe answered.
        probe_seq: u64,
    },
    /// End of the association.
    Bye,
}

/// An authenticated message: session, sequence number, body, and a tag over all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealed {
    /// The session (from AssociateAck).
    pub session: u64,
    /// Strictly increasing per sender and session.
    pub seq: u64,
    /// What it says.
    pub body: SealedBody,
    /// HMAC-SHA256 (truncated) over the encoded message up to this field.
    pub tag: [u8; TAG_LEN],
}

/// Any message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Type 1.
    Advert(Advert),
    /// Type 2.
    Query(Query),
    /// Type 3.
    Associate(Associate),
    /// Type 4.
    AssociateAck(AssociateAck),
    /// Types 5 to 9.
    Sealed(Sealed),
}

const T_ADVERT: u8 = 1;
const T_QUERY: u8 = 2;
const T_ASSOCIATE: u8 = 3;
const T_ASSOCIATE_ACK: u8 = 4;
const T_SWITCH: u8 = 5;
const T_SWITCH_ACK: u8 = 6;
const T_PROBE: u8 = 7;
const T_PROBE_ACK: u8 = 8;
const T_BYE: u8 = 9;

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
        if r.u8()? != VERSION {
            return Err(DecodeError::BadVersion);
        }
        let t = r.u8()?;
        let m = match t {
            T_ADVERT => {
                let identity = r.arr()?;
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
            T_ASSOCIATE => Message::Associate(Associate {
                client_key: r.arr()?,
                nonce: r.arr()?,
            }),
            T_ASSOCIATE_ACK => Message::AssociateAck(AssociateAck {
                session: r.u64()?,
                client_key: r.arr()?,
                global_addr: r.ip()?,
                ephemeral: r.arr()?,
                nonce: r.arr()?,
                signature: r.arr()?,
            }),
            T_SWITCH..=T_BYE => {
                let session = r.u64()?;
                let seq = r.u64()?;
                let body = match t {
                    T_SWITCH => SealedBody::Switch {
                        link: r.u8()?,
                        global: r.ip()?,
                        client_addr: r.ip()?,
                    },
                    T_SWITCH_ACK => SealedBody::SwitchAck { link: r.u8()? },
                    T_PROBE => SealedBody::Probe { link: r.u8()? },
                    T_PROBE_ACK => SealedBody::ProbeAck {
                        link: r.u8()?,
                        probe_seq: r.u64()?,
                    },
                    _ => SealedBody::Bye,
                };
                Message::Sealed(Sealed {
                    session,
                    seq,
                    body,
                    tag: r.arr()?,
                })
            }
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
        let mut o = Vec::with_capacity(128);
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
            Message::Associate(a) => {
                o.push(T_ASSOCIATE);
                o.extend_from_slice(&a.client_key);
                o.extend_from_slice(&a.nonce);
            }
            Message::AssociateAck(a) => {
                o.push(T_ASSOCIATE_ACK);
                emit_ack_signed_part(a, &mut o);
                o.extend_from_slice(&a.signature);
            }
            Message::Sealed(s) => {
                emit_sealed_tagged_part(s, &mut o);
                o.extend_from_slice(&s.tag);
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

/// The advert's bytes after the header and before the signature (what is signed, after the
/// header bytes: see [`advert_signed_bytes`]).
fn emit_advert_signed_part(a: &Advert, o: &mut Vec<u8>) {
    o.extend_from_slice(&a.identity);
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

fn emit_ack_signed_part(a: &AssociateAck, o: &mut Vec<u8>) {
    o.extend_from_slice(&a.session.to_be_bytes());
    o.extend_from_slice(&a.client_key);
    o.extend_from_slice(&a.global_addr.octets());
    o.extend_from_slice(&a.ephemeral);
    o.extend_from_slice(&a.nonce);
}

fn emit_sealed_tagged_part(s: &Sealed, o: &mut Vec<u8>) {
    let t = match s.body {
        SealedBody::Switch { .. } => T_SWITCH,
        SealedBody::SwitchAck { .. } => T_SWITCH_ACK,
        SealedBody::Probe { .. } => T_PROBE,
        SealedBody::ProbeAck { .. } => T_PROBE_ACK,
        SealedBody::Bye => T_BYE,
    };
    o.push(t);
    o.extend_from_slice(&s.session.to_be_bytes());
    o.extend_from_slice(&s.seq.to_be_bytes());
    match s.body {
        SealedBody::Switch {
            link,
            global,
            client_addr,
        } => {
            o.push(link);
            o.extend_from_slice(&global.octets());
            o.extend_from_slice(&client_addr.octets());
        }
        SealedBody::SwitchAck { link } | SealedBody::Probe { link } => o.push(link),
        SealedBody::ProbeAck { link, probe_seq } => {
            o.push(link);
            o.extend_from_slice(&probe_seq.to_be_bytes());
        }
        SealedBody::Bye => {}
    }
}

fn header(t: Option<u8>) -> Vec<u8> {
    let mut o = Vec::with_capacity(128);
    o.extend_from_slice(&MAGIC);
    o.push(VERSION);
    if let Some(t) = t {
        o.push(t);
    }
    o
}

/// The bytes an advert's signature covers: the whole message before the signature.
pub fn advert_signed_bytes(a: &Advert) -> Vec<u8> {
    let mut o = header(Some(T_ADVERT));
    emit_advert_signed_part(a, &mut o);
    o
}

/// The bytes an AssociateAck's signature covers: the message before the signature, then the
/// client's nonce (which binds the answer to that Associate).
pub fn ack_signed_bytes(a: &AssociateAck, client_nonce: &[u8; 16]) -> Vec<u8> {
    let mut o = header(Some(T_ASSOCIATE_ACK));
    emit_ack_signed_part(a, &mut o);
    o.extend_from_slice(client_nonce);
    o
}

/// The bytes a sealed message's tag covers: the whole message before the tag.
pub fn sealed_tagged_bytes(s: &Sealed) -> Vec<u8> {
    let mut o = header(None);
    emit_sealed_tagged_part(s, &mut o);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn advert() -> Advert {
        Advert {
            identity: [7; 32],
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
        let sealed = |body| {
            Message::Sealed(Sealed {
                session: 5,
                seq: 6,
                body,
                tag: [1; TAG_LEN],
            })
        };
        let all = [
            Message::Advert(advert()),
            Message::Query(Query { nonce: 3 }),
            Message::Associate(Associate {
                client_key: [2; 32],
                nonce: [3; 16],
            }),
            Message::AssociateAck(AssociateAck {
                session: 1,
                client_key: [2; 32],
                global_addr: Ipv4Addr::new(10, 200, 0, 9),
                ephemeral: [4; 32],
                nonce: [5; 16],
                signature: [6; 64],
            }),
            sealed(SealedBody::Switch {
                link: 1,
                global: Ipv4Addr::new(10, 200, 0, 9),
                client_addr: Ipv4Addr::new(10, 77, 2, 100),
            }),
            sealed(SealedBody::SwitchAck { link: 1 }),
            sealed(SealedBody::Probe { link: 2 }),
            sealed(SealedBody::ProbeAck {
                link: 2,
                probe_seq: 77,
            }),
            sealed(SealedBody::Bye),
        ];
        for m in all {
            let b = m.emit();
            assert!(b.len() <= MAX_MESSAGE);
            assert_eq!(Message::parse(&b), Ok(m.clone()));
            // Every strict prefix is refused, never a panic.
            for n in 0..b.len() {
                assert!(Message::parse(&b[..n]).is_err());
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Message::parse(&longer), Err(DecodeError::TooLong));
        }
    }

    #[test]
    fn bounds_are_enforced() {
        let mut b = Message::Advert(advert()).emit();
        // The link count byte sits after header(4) + 32 + 8 + 4 + 1 + 4 + 4.
        b[57] = (MAX_LINKS + 1) as u8;
        assert_eq!(Message::parse(&b), Err(DecodeError::BadField));
        let mut b = Message::Advert(advert()).emit();
        b[4 + 32 + 8 + 4] = 33;
        assert_eq!(Message::parse(&b), Err(DecodeError::BadField));
        assert_eq!(Message::parse(b"XX\x01\x02"), Err(DecodeError::BadMagic));
        assert_eq!(Message::parse(b"PH\x02\x02"), Err(DecodeError::BadVersion));
        assert_eq!(Message::parse(b"PH\x01\x63"), Err(DecodeError::BadType));
        assert_eq!(
            Message::parse(&[0u8; MAX_MESSAGE + 1]),
            Err(DecodeError::TooLong)
        );
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
