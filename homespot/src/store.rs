//! Durable storage in one redb file: DHCP leases, and the P-Handoff global address of each
//! client key.
//!
//! One table maps an IPv4 address to its lease record; another maps a client key to its
//! global address, when it was last used and its last handshake timestamp (records of the
//! first version, address only, are read as used at load time). [`LeaseStore::commit`] writes a batch of
//! records in one transaction with immediate durability: when it returns `Ok`, the records survive
//! a crash or `kill -9`. Grouping many clients' leases into one commit is the caller's job
//! (see `dhcp::server`).
//!
//! A write that fails (a full or failing flash) fails every later one in redb until the file
//! is opened again, so after a failed write the store reopens the file (redb repairs it) before
//! the next, at most once a second; until then writes fail with [`StoreError::Unavailable`].
//! Nothing is acknowledged meanwhile, and writes succeed again once the disk has room.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant as Clock};

use phandoff::endpoint::Instant;
use phandoff::pool::Assignment;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::dhcp::lease::{Lease, LeaseState};

const LEASES: TableDefinition<u32, &[u8]> = TableDefinition::new("leases_v1");
const GLOBALS_V1: TableDefinition<&[u8; 32], u32> = TableDefinition::new("handoff_globals_v1");
/// Value: global address (4), last used (8, microseconds since the Unix epoch), handshake
/// timestamp (8), all big-endian.
const GLOBALS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("handoff_globals_v2");

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error("cannot open lease database: {0}")]
    Open(#[from] redb::DatabaseError),
    /// A transaction failed to start.
    #[error("lease database transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("lease database table: {0}")]
    Table(#[from] redb::TableError),
    /// Reading or writing records failed.
    #[error("lease database storage: {0}")]
    Storage(#[from] redb::StorageError),
    /// The commit did not reach the disk.
    #[error("lease database commit: {0}")]
    Commit(#[from] redb::CommitError),
    /// A write failed and the file is not open again yet (tried at most once a second).
    #[error("lease database unavailable since a write failed; opening it again is retried")]
    Unavailable,
}

/// How often a store whose write failed tries to open its file again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);

/// The lease database.
pub struct LeaseStore {
    path: PathBuf,
    /// `None` after a failed write, until the file is open again.
    db: RwLock<Option<Database>>,
    /// When opening the file again was last tried.
    tried: Mutex<Option<Clock>>,
    /// Whether the last write failed.
    failing: AtomicBool,
}

/// What [`LeaseStore::load`] found.
pub struct Loaded {
    /// Every lease record that decoded.
    pub leases: Vec<Lease>,
    /// Records that did not decode (kept on disk, ignored).
    pub undecodable: usize,
}

impl LeaseStore {
    /// Opens the database at `path`, creating it (and nothing else) if missing, readable by
    /// its owner only (it names every client). After a crash redb repairs the file on open.
    pub fn open(path: &Path) -> Result<LeaseStore, StoreError> {
        Ok(LeaseStore {
            path: path.to_path_buf(),
            db: RwLock::new(Some(open_file(path)?)),
            tried: Mutex::new(None),
            failing: AtomicBool::new(false),
        })
    }

    /// Runs the write `f`; after a failure the file is opened again before the next write.
    /// An outage is logged twice: its first failure, and the first write that works again.
    fn write<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.reopen_if_closed();
        let r = {
            let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
            match guard.as_ref() {
                Some(db) => f(db),
                None => Err(StoreError::Unavailable),
            }
        };
        match &r {
            Ok(_) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(path = %self.path.display(), "lease database writes work again");
            }
            Ok(_) => {}
            Err(e) => {
                let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
                // Closed before it is opened again (redb holds a lock on the file).
                *db = None;
                if self.failing.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %e, "lease database write failed again");
                } else {
                    tracing::error!(error = %e, "lease database write failed; it is opened again before the next write, at most once a second");
                }
            }
        }
        r
    }

    /// Opens the file again if a failed write closed it and the last try is a second old.
    fn reopen_if_closed(&self) {
        if self.db.read().is_ok_and(|db| db.is_some()) {
            return;
        }
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        let mut tried = self.tried.lock().unwrap_or_else(|e| e.into_inner());
        if db.is_some() || tried.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return;
        }
        *tried = Some(Clock::now());
        match open_file(&self.path) {
            Ok(d) => *db = Some(d),
            Err(e) => tracing::debug!(error = %e, "lease database not open again yet"),
        }
    }

    /// Reads every lease.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let txn = guard
            .as_ref()
            .ok_or(StoreError::Unavailable)?
            .begin_read()?;
        let table = txn.open_table(LEASES)?;
        let mut leases = Vec::new();
        let mut undecodable = 0;
        for row in table.iter()? {
            let (k, v) = row?;
            match decode(Ipv4Addr::from(k.value()), v.value()) {
                Some(l) => leases.push(l),
                None => undecodable += 1,
            }
        }
        Ok(Loaded {
            leases,
            undecodable,
        })
    }

    /// Writes `leases` in one durable transaction; a later record for the same address wins.
    pub fn commit(&self, leases: &[Lease]) -> Result<(), StoreError> {
        if leases.is_empty() {
            return Ok(());
        }
        self.write(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(LEASES)?;
                let mut buf = Vec::with_capacity(64);
                for l in leases {
                    buf.clear();
                    encode(l, &mut buf);
                    table.insert(u32::from(l.addr), buf.as_slice())?;
                }
            }
            txn.commit()?;
            Ok(())
        })
    }
}

impl LeaseStore {
    /// Every client key's assignment. `now` stands for "last used" in first-version records.
    pub fn load_globals(&self, now: Instant) -> Result<Vec<([u8; 32], Assignment)>, StoreError> {
        let guard = self.db.read().unwrap_or_else(|e| e.into_inner());
        let txn = guard
            .as_ref()
            .ok_or(StoreError::Unavailable)?
            .begin_read()?;
        let table = txn.open_table(GLOBALS)?;
        let mut out = std::collections::BTreeMap::new();
        for row in table.iter()? {
            let (k, v) = row?;
            if let Some(a) = decode_global(v.value()) {
                out.insert(*k.value(), a);
            }
        }
        let old = txn.open_table(GLOBALS_V1)?;
        for row in old.iter()? {
            let (k, v) = row?;
            out.entry(*k.value()).or_insert(Assignment {
                global: Ipv4Addr::from(v.value()),
                last_used: now,
                timestamp: 0,
            });
        }
        Ok(out.into_iter().collect())
    }

    /// Records `key`'s assignment durably.
    pub fn save_global(&self, key: &[u8; 32], a: &Assignment) -> Result<(), StoreError> {
        let mut v = Vec::with_capacity(20);
        v.extend_from_slice(&a.global.octets());
        v.extend_from_slice(&a.last_used.0.to_be_bytes());
        v.extend_from_slice(&a.timestamp.to_be_bytes());
        self.write(|db| {
            let txn = db.begin_write()?;
            {
                let mut table = txn.open_table(GLOBALS)?;
                table.insert(key, v.as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })
    }

    /// Forgets `key`'s assignment (expired or evicted).
    pub fn forget_global(&self, key: &[u8; 32]) -> Result<(), StoreError> {
        self.write(|db| {
            let txn = db.begin_write()?;
            {
                txn.open_table(GLOBALS)?.remove(key)?;
                txn.open_table(GLOBALS_V1)?.remove(key)?;
            }
            txn.commit()?;
            Ok(())
        })
    }
}

/// Opens (or creates) the file with its tables, readable by its owner only; redb repairs a
/// file that was not closed cleanly.
fn open_file(path: &Path) -> Result<Database, StoreError> {
    let db = Database::create(path)?;
    let _ = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
    let txn = db.begin_write()?;
    txn.open_table(LEASES)?;
    txn.open_table(GLOBALS_V1)?;
    txn.open_table(GLOBALS)?;
    txn.commit()?;
    Ok(db)
}

fn decode_global(v: &[u8]) -> Option<Assignment> {
    if v.len() != 20 {
        return None;
    }
    Some(Assignment {
        global: Ipv4Addr::new(v[0], v[1], v[2], v[3]),
        last_used: Instant(u64::from_be_bytes(v[4..12].try_into().ok()?)),
        timestamp: u64::from_be_bytes(v[12..20].try_into().ok()?),
    })
}

// Record layout, version 1: [1][state u8][expires u64 BE][client key bytes...]
// Version 2: [2][state u8][expires u64 BE][mac: 0, or 6 and six bytes][key length u16 BE]
// [client key][hostname bytes (UTF-8), to the end]
fn encode(l: &Lease, out: &mut Vec<u8>) {
    out.push(2);
    out.push(l.state as u8);
    out.extend_from_slice(&l.expires.to_be_bytes());
    match l.mac {
        Some(m) => {
            out.push(6);
            out.extend_from_slice(&m);
        }
        None => out.push(0),
    }
    let key = &l.client[..l.client.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(l.hostname.as_deref().unwrap_or("").as_bytes());
}

fn decode(addr: Ipv4Addr, v: &[u8]) -> Option<Lease> {
    let (&version, rest) = v.split_first()?;
    if rest.len() < 9 {
        return None;
    }
    let state = LeaseState::from_u8(rest[0])?;
    let expires = u64::from_be_bytes(rest[1..9].try_into().ok()?);
    let rest = &rest[9..];
    let (mac, client, hostname) = match version {
        1 => (None, rest.to_vec(), None),
        2 => {
            let (&mlen, rest) = rest.split_first()?;
            let (mac, rest) = match mlen {
                0 => (None, rest),
                6 if rest.len() >= 6 => (<[u8; 6]>::try_from(&rest[..6]).ok(), &rest[6..]),
                _ => return None,
            };
            let klen = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
            let rest = &rest[2..];
            if rest.len() < klen {
                return None;
            }
            let name = std::str::from_utf8(&rest[klen..]).ok()?;
            let hostname = (!name.is_empty()).then(|| name.to_string());
            (mac, rest[..klen].to_vec(), hostname)
        }
        _ => return None,
    };
    Some(Lease {
        addr,
        client,
        expires,
        state,
        mac,
        hostname,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_version_records_still_load() {
        let mut v1 = vec![1, 0];
        v1.extend_from_slice(&77u64.to_be_bytes());
        v1.extend_from_slice(&[0, 1, 9, 9]);
        let l = decode(Ipv4Addr::new(10, 0, 0, 1), &v1).expect("decodes");
        assert_eq!(
            (l.client, l.expires, l.mac, l.hostname),
            (vec![0, 1, 9, 9], 77, None, None)
        );
        assert!(decode(Ipv4Addr::new(10, 0, 0, 1), &[2, 0, 1]).is_none());
    }

    #[test]
    fn commit_then_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("l.redb");
        let a = Lease {
            addr: Ipv4Addr::new(10, 0, 0, 5),
            client: vec![0, 1, 2, 3, 4, 5, 6],
            expires: 1_700_000_000,
            state: LeaseState::Bound,
            mac: Some([2, 3, 4, 5, 6, 7]),
            hostname: Some("kitchen-tablet".into()),
        };
        let b = Lease {
            addr: Ipv4Addr::new(10, 0, 0, 6),
            client: vec![],
            expires: 9,
            state: LeaseState::Declined,
            mac: None,
            hostname: None,
        };
        {
            let s = LeaseStore::open(&path).expect("open");
            s.commit(&[a.clone(), b.clone()]).expect("commit");
        }
        let s = LeaseStore::open(&path).expect("reopen");
        let mut got = s.load().expect("load").leases;
        got.sort_by_key(|l| l.addr);
        assert_eq!(got, vec![a, b]);
    }

    #[test]
    fn globals_survive_reopening_and_can_be_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.redb");
        let a = Assignment {
            global: Ipv4Addr::new(10, 200, 0, 2),
            last_used: Instant(1_700_000_000_000_000),
            timestamp: 42,
        };
        {
            let s = LeaseStore::open(&path).expect("open");
            s.save_global(&[7; 32], &a).expect("save");
            s.save_global(&[8; 32], &a).expect("save");
            s.forget_global(&[8; 32]).expect("forget");
            // A first-version record.
            s.write(|db| {
                let txn = db.begin_write()?;
                txn.open_table(GLOBALS_V1)?
                    .insert(&[9; 32], u32::from(Ipv4Addr::new(10, 200, 0, 3)))?;
                txn.commit()?;
                Ok(())
            })
            .expect("a first-version record");
        }
        let s = LeaseStore::open(&path).expect("reopen");
        let now = Instant(1_800_000_000_000_000);
        assert_eq!(
            s.load_globals(now).expect("load"),
            vec![
                ([7; 32], a),
                (
                    [9; 32],
                    Assignment {
                        global: Ipv4Addr::new(10, 200, 0, 3),
                        last_used: now,
                        timestamp: 0
                    }
                )
            ]
        );
    }

    #[test]
    fn undecodable_records_are_skipped() {
        assert!(decode(Ipv4Addr::LOCALHOST, &[]).is_none());
        assert!(decode(Ipv4Addr::LOCALHOST, &[2, 0, 0]).is_none());
        assert!(decode(Ipv4Addr::LOCALHOST, &[1, 9, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }
}
