//! The JSON-lines store: an append-only file, one object a line per swarm per round (see
//! [`JsonlLine`]). Each batch is written with one `write` and fsynced before `record` returns.
//!
//! Resuming reads the file once, line by line with a bounded line length, to restore each
//! swarm's first/last seen times and name, and the next run number. A crash can leave a torn
//! last line; it is cut off on open. A crash in the middle of a batch's write can leave a
//! prefix of that batch (never reported stored): JSONL may then hold more than was reported,
//! never less. The SQL stores are exact.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CrawlStore, Pruned, Result, StoreError};
use crate::crawl::record::{Metadata, Observation, RunId, RunInfo};
use crate::id::InfoHash;

/// Longest line read back on resume (a swarm with ~500,000 peers); longer means corruption.
const MAX_LINE: u64 = 16 << 20;

/// Swarms remembered for first_seen and names by default (~100 bytes each). Past the cap a
/// new swarm's lines still get written, with first_seen counted from its first line since open.
pub const DEFAULT_SWARM_CAP: usize = 1_000_000;

/// One line of the file. Times are unix milliseconds (integers), not RFC 3339 strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonlLine {
    /// 40 lowercase hex digits.
    pub info_hash: String,
    /// "IP:PORT", IPv6 as "[IP]:PORT".
    pub peers: Vec<String>,
    pub seeds: Option<u32>,
    pub leechers: Option<u32>,
    pub round: u32,
    pub run: i64,
    pub observed_at: i64,
    /// The swarm's first sighting in this file (across runs), up to this line.
    pub first_seen: i64,
    pub last_seen: i64,
    pub name: Option<String>,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct Swarm {
    first_seen: i64,
    last_seen: i64,
    name: Option<String>,
    size: Option<u64>,
}

pub struct JsonlStore {
    target: String,
    file: File,
    /// Length of the file up to the last fsynced batch: where a failed batch is cut back to.
    len: u64,
    swarms: HashMap<InfoHash, Swarm>,
    cap: usize,
    next_run: i64,
    /// Test hook: write only this many bytes of the next batch, then fail.
    #[cfg(test)]
    pub(crate) fail_after: Option<usize>,
}

impl JsonlStore {
    pub fn open(path: impl AsRef<Path>) -> Result<JsonlStore> {
        JsonlStore::open_with_cap(path, DEFAULT_SWARM_CAP)
    }

    /// Opens with at most `cap` swarms remembered in memory.
    pub fn open_with_cap(path: impl AsRef<Path>, cap: usize) -> Result<JsonlStore> {
        let path: PathBuf = path.as_ref().into();
        let target = path.display().to_string();
        let io = |source| StoreError::Io { target: target.clone(), source };
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(io)?;
        let mut store = JsonlStore {
            target: target.clone(),
            file,
            len: 0,
            swarms: HashMap::new(),
            cap,
            next_run: 1,
            #[cfg(test)]
            fail_after: None,
        };
        store.resume()?;
        Ok(store)
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io { target: self.target.clone(), source }
    }

    /// Reads the file back; cuts a torn or unparseable last line.
    fn resume(&mut self) -> Result<()> {
        let mut reader = BufReader::new(self.file.try_clone().map_err(|e| self.io(e))?);
        let mut good_len = 0u64;
        let mut line_no = 0u64;
        let mut line = Vec::new();
        let mut bad: Option<String> = None;
        loop {
            line.clear();
            let n = (&mut reader).take(MAX_LINE + 1).read_until(b'\n', &mut line).map_err(|e| self.io(e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            if let Some(why) = bad.take() {
                // A bad line followed by more data is not a torn tail: refuse to guess.
                return Err(StoreError::Corrupt { target: self.target.clone(), line: line_no - 1, why });
            }
            if line.last() != Some(&b'\n') {
                bad = Some(if n as u64 > MAX_LINE { "line too long".into() } else { "torn line".into() });
                continue;
            }
            let text = &line[..line.len() - 1];
            if !text.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<JsonlLine>(text) {
                    Ok(parsed) => self.restore(&parsed),
                    Err(e) => {
                        bad = Some(e.to_string());
                        continue;
                    }
                }
            }
            good_len += n as u64;
        }
        if let Some(why) = bad {
            tracing::warn!(target = %self.target, line = line_no, %why, "cutting a torn last line");
            self.file.set_len(good_len).map_err(|e| self.io(e))?;
            self.file.sync_all().map_err(|e| self.io(e))?;
        }
        self.len = good_len;
        Ok(())
    }

    fn restore(&mut self, line: &JsonlLine) {
        self.next_run = self.next_run.max(line.run + 1);
        let Ok(hash) = line.info_hash.parse::<InfoHash>() else { return };
        let full = self.swarms.len() >= self.cap;
        let entry = match self.swarms.get_mut(&hash) {
            Some(e) => e,
            None if full => return,
            None => self.swarms.entry(hash).or_insert(Swarm {
                first_seen: line.first_seen,
                last_seen: line.last_seen,
                ..Swarm::default()
            }),
        };
        entry.first_seen = entry.first_seen.min(line.first_seen);
        entry.last_seen = entry.last_seen.max(line.last_seen);
        if line.name.is_some() {
            entry.name.clone_from(&line.name);
            entry.size = line.size;
        }
    }

    /// Writes `buf` at the end and fsyncs it, or cuts the file back to where it was.
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        let result = self.write_synced(buf);
        if let Err(e) = result {
            // Best effort: if even the cut fails, the next open still parses what is there.
            let _ = self.file.set_len(self.len);
            return Err(self.io(e));
        }
        self.len += buf.len() as u64;
        Ok(())
    }

    fn write_synced(&mut self, buf: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_after.take() {
            self.file.write_all(&buf[..n.min(buf.len())])?;
            return Err(std::io::Error::other("injected write failure"));
        }
        self.file.write_all(buf)?;
        self.file.sync_data()
    }
}

impl CrawlStore for JsonlStore {
    fn begin_run(&mut self, _run: &RunInfo) -> Result<RunId> {
        // JSONL has no run line: the number is max(run in file) + 1, and a run that records
        // nothing leaves no trace.
        let id = RunId(self.next_run);
        self.next_run += 1;
        Ok(id)
    }

    fn record(&mut self, run: RunId, batch: &[Observation]) -> Result<()> {
        // Changes are staged and applied to memory only once the batch is durable.
        let mut staged: HashMap<InfoHash, Swarm> = HashMap::new();
        let mut buf = Vec::with_capacity(batch.len() * 256);
        for obs in batch {
            let swarm = staged.entry(obs.info_hash).or_insert_with(|| {
                self.swarms.get(&obs.info_hash).cloned().unwrap_or(Swarm {
                    first_seen: obs.observed_at_ms,
                    last_seen: obs.observed_at_ms,
                    ..Swarm::default()
                })
            });
            swarm.first_seen = swarm.first_seen.min(obs.observed_at_ms);
            swarm.last_seen = swarm.last_seen.max(obs.observed_at_ms);
            let line = JsonlLine {
                info_hash: obs.info_hash.to_hex(),
                peers: obs.peers.iter().map(|p| p.to_string()).collect(),
                seeds: obs.seeds,
                leechers: obs.leechers,
                round: obs.round,
                run: run.0,
                observed_at: obs.observed_at_ms,
                first_seen: swarm.first_seen,
                last_seen: swarm.last_seen,
                name: swarm.name.clone(),
                size: swarm.size,
            };
            serde_json::to_writer(&mut buf, &line).map_err(|e| self.io(e.into()))?;
            buf.push(b'\n');
        }
        self.append(&buf)?;
        for (hash, swarm) in staged {
            if self.swarms.len() < self.cap || self.swarms.contains_key(&hash) {
                self.swarms.insert(hash, swarm);
            }
        }
        Ok(())
    }

    fn record_metadata(&mut self, meta: &Metadata) -> Result<()> {
        if self.swarms.len() >= self.cap && !self.swarms.contains_key(&meta.info_hash) {
            return Ok(());
        }
        // A swarm not yet observed gets times from its first observation line.
        let swarm = self.swarms.entry(meta.info_hash).or_insert(Swarm {
            first_seen: i64::MAX,
            last_seen: i64::MIN,
            ..Swarm::default()
        });
        swarm.name = Some(meta.name.clone());
        swarm.size = Some(meta.size);
        Ok(())
    }

    fn end_run(&mut self, _run: RunId, _ended_at_ms: i64) -> Result<()> {
        Ok(())
    }

    fn known_info_hashes(&mut self, limit: usize) -> Result<Vec<InfoHash>> {
        let mut all: Vec<(&InfoHash, &Swarm)> =
            self.swarms.iter().filter(|(_, s)| s.first_seen <= s.last_seen).collect();
        all.sort_by(|a, b| b.1.last_seen.cmp(&a.1.last_seen).then(a.0.cmp(b.0)));
        Ok(all.into_iter().take(limit).map(|(h, _)| *h).collect())
    }

    fn prune(&mut self, _before_ms: i64) -> Result<Pruned> {
        Err(StoreError::Unsupported { target: self.target.clone(), what: "retention (prune)" })
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.file.sync_all().map_err(|e| self.io(e))
    }
}

#[cfg(test)]
mod tests;
