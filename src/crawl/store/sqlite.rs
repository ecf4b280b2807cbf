//! The embedded store: SQLite (compiled in, so a fresh machine needs no system library) in WAL
//! mode, one transaction per batch, the shared schema (`schema.sql`).
//!
//! Durability: `synchronous=FULL`, so a batch is fsynced to the WAL before `record` returns and
//! survives power loss, not only a process crash (which `NORMAL` would already survive in WAL
//! mode). The fsync is paid once per batch of thousands of rows, so it costs little.
//!
//! The WAL is kept small: SQLite checkpoints it every `wal_autocheckpoint` pages, the store runs
//! `wal_checkpoint(TRUNCATE)` every [`CHECKPOINT_EVERY`] batches and at close, and
//! `journal_size_limit` truncates the file after a checkpoint. A reader that holds a snapshot
//! open forever can still stop checkpoints from finishing; that is the reader's to fix.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, Transaction};

use super::{ip_bytes, schema_for, CrawlStore, Pruned, Result, StoreError, SCHEMA_VERSION};
use crate::crawl::record::{Metadata, Observation, RunId, RunInfo};
use crate::id::InfoHash;

/// Batches between explicit `wal_checkpoint(TRUNCATE)`s (counted, not timed: no clock here).
pub const CHECKPOINT_EVERY: u64 = 64;

pub struct SqliteStore {
    target: String,
    conn: Connection,
    batches: u64,
}

impl SqliteStore {
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let target = path.as_ref().display().to_string();
        let err = |source| StoreError::Sqlite { target: target.clone(), source };
        let mut conn = Connection::open(path.as_ref()).map_err(err)?;
        // Another crawler or a reader may hold the write lock for a moment.
        conn.busy_timeout(std::time::Duration::from_secs(30)).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 1000;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA foreign_keys = OFF;",
        )
        .map_err(err)?;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { target, found, supported: SCHEMA_VERSION });
        }
        tx.execute_batch(&schema_for("INTEGER PRIMARY KEY", "BLOB", "WITHOUT ROWID")).map_err(err)?;
        tx.execute("INSERT OR IGNORE INTO schema_version (version) VALUES (?1)", [SCHEMA_VERSION]).map_err(err)?;
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}")).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(SqliteStore { target, conn, batches: 0 })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { target: self.target.clone(), source }
    }

    /// The connection, for tests and tools that query the store directly.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn checkpoint(&self) -> Result<()> {
        // Returns (busy, log pages, checkpointed pages); busy only means a reader held on.
        self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(|e| self.err(e))
    }
}

fn record_batch(tx: &Transaction<'_>, run: RunId, batch: &[Observation]) -> rusqlite::Result<()> {
    let mut swarm_up = tx.prepare_cached(
        "INSERT INTO swarms (info_hash, first_seen, last_seen, last_peers, last_seeds, last_leechers)
         VALUES (?1, ?2, ?2, ?3, ?4, ?5)
         ON CONFLICT (info_hash) DO UPDATE SET
           first_seen = MIN(swarms.first_seen, excluded.first_seen),
           last_seen = MAX(swarms.last_seen, excluded.last_seen),
           last_peers = CASE WHEN excluded.last_seen >= swarms.last_seen
                        THEN excluded.last_peers ELSE swarms.last_peers END,
           last_seeds = CASE WHEN excluded.last_seen >= swarms.last_seen
                        THEN excluded.last_seeds ELSE swarms.last_seeds END,
           last_leechers = CASE WHEN excluded.last_seen >= swarms.last_seen
                        THEN excluded.last_leechers ELSE swarms.last_leechers END
         RETURNING id",
    )?;
    let mut obs_ins = tx.prepare_cached(
        "INSERT INTO observations (run, round, swarm, observed_at, peer_count, seeds, leechers)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut peer_up = tx.prepare_cached(
        "INSERT INTO peers (swarm, ip, port, first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?4)
         ON CONFLICT (swarm, ip, port) DO UPDATE SET
           first_seen = MIN(peers.first_seen, excluded.first_seen),
           last_seen = MAX(peers.last_seen, excluded.last_seen)
         RETURNING id",
    )?;
    let mut member_ins =
        tx.prepare_cached("INSERT OR IGNORE INTO observation_peers (observation, peer) VALUES (?1, ?2)")?;
    for obs in batch {
        let at = obs.observed_at_ms;
        let count = obs.peers.len() as i64;
        let swarm: i64 = swarm_up
            .query_row(params![obs.info_hash.as_bytes().as_slice(), at, count, obs.seeds, obs.leechers], |r| {
                r.get(0)
            })?;
        obs_ins.execute(params![run.0, obs.round, swarm, at, count, obs.seeds, obs.leechers])?;
        let observation = tx.last_insert_rowid();
        for peer in &obs.peers {
            let id: i64 = peer_up.query_row(params![swarm, ip_bytes(peer), peer.port(), at], |r| r.get(0))?;
            member_ins.execute(params![observation, id])?;
        }
    }
    Ok(())
}

impl CrawlStore for SqliteStore {
    fn begin_run(&mut self, run: &RunInfo) -> Result<RunId> {
        self.conn
            .execute(
                "INSERT INTO runs (started_at, crawler, args) VALUES (?1, ?2, ?3)",
                params![run.started_at_ms, run.crawler, run.args],
            )
            .map_err(|e| self.err(e))?;
        Ok(RunId(self.conn.last_insert_rowid()))
    }

    fn record(&mut self, run: RunId, batch: &[Observation]) -> Result<()> {
        let target = self.target.clone();
        let err = |source| StoreError::Sqlite { target: target.clone(), source };
        // IMMEDIATE takes the write lock up front, so a busy database waits here (busy_timeout)
        // instead of failing at the first write.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        // On error the transaction is dropped and rolls back: nothing of the batch remains.
        record_batch(&tx, run, batch).map_err(err)?;
        tx.commit().map_err(err)?;
        self.batches += 1;
        if self.batches.is_multiple_of(CHECKPOINT_EVERY) {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn record_metadata(&mut self, meta: &Metadata) -> Result<()> {
        // A swarm known only by its metadata gets its times from its first observation; until
        // then first_seen > last_seen marks it as never observed.
        self.conn
            .execute(
                "INSERT INTO swarms (info_hash, first_seen, last_seen, name, size)
                 VALUES (?1, 9223372036854775807, -9223372036854775808, ?2, ?3)
                 ON CONFLICT (info_hash) DO UPDATE SET name = excluded.name, size = excluded.size",
                params![meta.info_hash.as_bytes().as_slice(), meta.name, meta.size as i64],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn end_run(&mut self, run: RunId, ended_at_ms: i64) -> Result<()> {
        let n = self
            .conn
            .execute("UPDATE runs SET ended_at = ?1 WHERE id = ?2", params![ended_at_ms, run.0])
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StoreError::Invalid { target: self.target.clone(), why: format!("no run {run}") });
        }
        Ok(())
    }

    fn known_info_hashes(&mut self, limit: usize) -> Result<Vec<InfoHash>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT info_hash FROM swarms WHERE first_seen <= last_seen ORDER BY last_seen DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([limit as i64], |r| r.get::<_, Vec<u8>>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|b| {
                InfoHash::from_slice(b)
                    .map_err(|e| StoreError::Invalid { target: self.target.clone(), why: e.to_string() })
            })
            .collect()
    }

    fn prune(&mut self, before_ms: i64) -> Result<Pruned> {
        let target = self.target.clone();
        let err = |source| StoreError::Sqlite { target: target.clone(), source };
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(err)?;
        tx.execute(
            "DELETE FROM observation_peers WHERE observation IN
               (SELECT id FROM observations WHERE observed_at < ?1)",
            [before_ms],
        )
        .map_err(err)?;
        let observations = tx.execute("DELETE FROM observations WHERE observed_at < ?1", [before_ms]).map_err(err)?;
        // A peer last seen before the cutoff appears only in observations just deleted.
        let peers = tx.execute("DELETE FROM peers WHERE last_seen < ?1", [before_ms]).map_err(err)?;
        let swarms = tx
            .execute("DELETE FROM swarms WHERE last_seen < ?1 AND first_seen <= last_seen", [before_ms])
            .map_err(err)?;
        tx.commit().map_err(err)?;
        self.checkpoint()?;
        Ok(Pruned { observations: observations as u64, peers: peers as u64, swarms: swarms as u64 })
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.checkpoint()?;
        let target = self.target.clone();
        self.conn.close().map_err(|(_, source)| StoreError::Sqlite { target, source })
    }
}

/// Counts of the store's tables, for tests and the bench.
pub fn table_counts(conn: &Connection) -> rusqlite::Result<HashMap<&'static str, i64>> {
    let mut out = HashMap::new();
    for table in ["runs", "swarms", "peers", "observations", "observation_peers"] {
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        out.insert(table, n);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
