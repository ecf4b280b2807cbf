//! Where a crawl's findings go, behind one interface: a JSON-lines file, an embedded SQLite
//! database, or a PostgreSQL database shared by several crawlers. [`open`] picks the backend
//! from the `--out` target.
//!
//! The store is synchronous on purpose: the crawler runs it on a writer thread fed by a channel,
//! so a slow disk or database stalls that thread, never the DHT. A batch handed to
//! [`CrawlStore::record`] is one transaction: when it returns `Ok`, every row of the batch is
//! durable (fsynced) and the crawler may report it stored; when it returns `Err`, none is.
//!
//! The SQL schema (tables `runs`, `swarms`, `peers`, `observations`, `observation_peers`) is
//! one text, `schema.sql`, shared by SQLite and PostgreSQL; `docs/crawl-schema.md` documents it.

mod jsonl;
mod postgres;
mod sqlite;
#[cfg(test)]
mod test_util;

use crate::crawl::record::{Metadata, Observation, RunId, RunInfo};
use crate::id::InfoHash;

pub use self::jsonl::{JsonlLine, JsonlStore};
pub use self::postgres::redact;
pub use self::postgres::PostgresStore;
pub use self::sqlite::{table_counts, SqliteStore, CHECKPOINT_EVERY};

/// The schema version this build writes; stored in the `schema_version` table (and, in
/// SQLite, in `PRAGMA user_version` too). A store with a newer version is refused.
pub const SCHEMA_VERSION: i64 = 1;

/// The shared DDL with three dialect placeholders: `{id}` (an auto-numbered primary key),
/// `{blob}` (a byte string) and `{without_rowid}` (SQLite's compact table layout).
pub(crate) const SCHEMA_SQL: &str = include_str!("schema.sql");

/// Why the store failed. Every message names the file or (password-free) URL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{0}` is not a crawl store: use FILE.jsonl, FILE.sqlite (or FILE.db) or a postgres:// URL")]
    UnknownTarget(String),
    #[error("{target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: line {line}: {why}")]
    Corrupt { target: String, line: u64, why: String },
    #[error("{target}: SQLite: {source}")]
    Sqlite {
        target: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{target}: PostgreSQL: {source}")]
    Postgres {
        target: String,
        #[source]
        source: ::postgres::Error,
    },
    #[error("{target}: schema version {found} is newer than this kadswarm's {supported}: upgrade kadswarm")]
    SchemaTooNew { target: String, found: i64, supported: i64 },
    #[error("{target}: {what} is not supported by this store")]
    Unsupported { target: String, what: &'static str },
    #[error("{target}: {why}")]
    Invalid { target: String, why: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What [`CrawlStore::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub observations: u64,
    pub peers: u64,
    pub swarms: u64,
}

/// A crawl's storage. All methods block; see the module doc for the threading model.
pub trait CrawlStore: Send {
    /// Registers a run and returns its number, unique in this store across crawlers.
    fn begin_run(&mut self, run: &RunInfo) -> Result<RunId>;

    /// Stores one batch in one transaction: all of it or, on `Err`, none of it. Keeps each
    /// swarm's (and, in SQL, each peer's) first and last seen times across runs.
    fn record(&mut self, run: RunId, batch: &[Observation]) -> Result<()>;

    /// Stores a swarm's BEP 9 name and size. JSONL keeps it in memory and writes it on that
    /// swarm's next observation line (JSONL has no metadata line of its own).
    fn record_metadata(&mut self, meta: &Metadata) -> Result<()>;

    /// Marks a run finished.
    fn end_run(&mut self, run: RunId, ended_at_ms: i64) -> Result<()>;

    /// Up to `limit` swarms already in the store, most recently seen first: what a resumed
    /// crawl re-checks.
    fn known_info_hashes(&mut self, limit: usize) -> Result<Vec<InfoHash>>;

    /// Retention: removes observations older than `before_ms` (unix ms), then the peers and
    /// swarms not seen since. Not supported by JSONL (an append-only file; rotate it instead).
    fn prune(&mut self, before_ms: i64) -> Result<Pruned>;

    /// Flushes and closes: SQLite checkpoints and truncates its WAL. Dropping a store without
    /// `close` is safe too (every `Ok` batch is already durable); `close` reports errors.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Which backend a target names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Jsonl,
    Sqlite,
    Postgres,
}

impl Backend {
    /// Chooses by the target's form: a `postgres://` or `postgresql://` URL, or a file ending
    /// `.jsonl`, `.sqlite`, `.sqlite3` or `.db`.
    pub fn of(target: &str) -> Result<Backend> {
        let lower = target.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if lower.ends_with(".jsonl") {
            Ok(Backend::Jsonl)
        } else if [".sqlite", ".sqlite3", ".db"].iter().any(|ext| lower.ends_with(ext)) {
            Ok(Backend::Sqlite)
        } else {
            Err(StoreError::UnknownTarget(target.to_string()))
        }
    }
}

/// Opens (creating if needed) the store `target` names; see [`Backend::of`]. Re-opening an
/// existing store resumes it: new runs add observations to what is there.
pub fn open(target: &str) -> Result<Box<dyn CrawlStore>> {
    Ok(match Backend::of(target)? {
        Backend::Jsonl => Box::new(JsonlStore::open(target)?),
        Backend::Sqlite => Box::new(SqliteStore::open(target)?),
        Backend::Postgres => Box::new(PostgresStore::open(target)?),
    })
}

/// The schema for one dialect: the shared text with its placeholders filled.
pub(crate) fn schema_for(id: &str, blob: &str, without_rowid: &str) -> String {
    SCHEMA_SQL.replace("{id}", id).replace("{blob}", blob).replace("{without_rowid}", without_rowid)
}

/// A peer address as stored in SQL: the IP's 4 or 16 bytes, and the port.
pub(crate) fn ip_bytes(addr: &std::net::SocketAddr) -> Vec<u8> {
    match addr.ip() {
        std::net::IpAddr::V4(ip) => ip.octets().to_vec(),
        std::net::IpAddr::V6(ip) => ip.octets().to_vec(),
    }
}

/// The inverse of [`ip_bytes`]; `None` for a length that is neither 4 nor 16.
pub fn addr_from_bytes(ip: &[u8], port: u16) -> Option<std::net::SocketAddr> {
    let ip: std::net::IpAddr = match ip.len() {
        4 => <[u8; 4]>::try_from(ip).ok()?.into(),
        16 => <[u8; 16]>::try_from(ip).ok()?.into(),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_by_target() {
        assert_eq!(Backend::of("out.jsonl").unwrap(), Backend::Jsonl);
        assert_eq!(Backend::of("/x/OUT.SQLITE").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("a.db").unwrap(), Backend::Sqlite);
        assert_eq!(Backend::of("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of("postgresql://h/db").unwrap(), Backend::Postgres);
        let err = Backend::of("out.csv").unwrap_err();
        assert!(err.to_string().contains("out.csv"), "{err}");
        assert!(open("mysql://h/db").is_err());
    }

    #[test]
    fn schema_placeholders_all_filled() {
        let s = schema_for("A", "B", "C");
        assert!(!s.contains('{') && !s.contains('}'), "{s}");
    }

    #[test]
    fn addr_bytes_round_trip() {
        for a in ["1.2.3.4:5", "[2001:db8::1]:6881"] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            assert_eq!(addr_from_bytes(&ip_bytes(&a), a.port()), Some(a));
        }
        assert_eq!(addr_from_bytes(&[1, 2, 3], 1), None);
    }
}
