//! The disk worker of one torrent: a thread of its own owns the torrent's [`Storage`] and
//! does every blocking payload operation the core asks for — writing received blocks, hashing
//! finished pieces, reading blocks peers asked for, saving the resume record — in the order
//! asked. Its queue is bounded (`disk_queue`): when the disk falls behind, the torrent task waits, its peer
//! tasks stop reading, and TCP slows the senders down. Being off the async worker, it
//! pipelines with the network: blocks are written and hashed on one core while the next ones
//! arrive on the other.
//!
//! Each block joins its piece's hash right after it is written, while its bytes are still in
//! the CPU's cache ([`InOrderHashes`]); a finished piece is read back only from where its
//! blocks stopped arriving in order. Hashing here rather than on a hasher thread of its own
//! saves a thread wake-up per block: with the hash on a third thread the download cost about
//! a fifth more CPU, most of it in the scheduler.

use std::path::PathBuf;
use std::sync::Arc;

use sha1::{Digest, Sha1};
use tokio::sync::{mpsc, oneshot};

use super::disk_queue::{queue, QueueTx};

use crate::storage::in_order_hash::InOrderHashes;
use crate::storage::{resume, Storage};
use crate::swarm::session::{DiskFault, DiskOp, Input};
use crate::wire::message::BlockRef;

/// Operations queued for the disk at most (1 MiB of 16 KiB blocks): enough to keep the network
/// going while the disk thread hashes a piece, little enough to keep memory flat.
pub const DISK_QUEUE: usize = 64;

/// Free queue slots handed back to the torrent task at a time (see `disk_queue`).
const SLOTS_BACK: usize = 16;

/// The torrent task's end of the queue.
pub type DiskTx = QueueTx<DiskCmd>;

#[derive(Debug)]
pub enum DiskCmd {
    /// What the torrent core asked for.
    Op(DiskOp),
    /// Flushes the payload and records which pieces are verified.
    SaveResume { have: Vec<bool>, faulted: bool, reply: oneshot::Sender<()> },
}

/// Starts the worker thread; it ends when the sender is dropped.
pub fn start(
    storage: Arc<Storage>,
    output: PathBuf,
    info_hash_hex: String,
    results: mpsc::UnboundedSender<Input>,
) -> std::io::Result<DiskTx> {
    let (tx, mut rx) = queue(DISK_QUEUE, SLOTS_BACK);
    std::thread::Builder::new().name("kadswarm-disk".into()).spawn(move || {
        let mut worker =
            Worker { storage, output, hex: info_hash_hex, results, hashes: InOrderHashes::default(), faulted: false };
        while let Some(cmd) = rx.blocking_recv() {
            worker.run(cmd);
        }
    })?;
    Ok(tx)
}

struct Worker {
    storage: Arc<Storage>,
    output: PathBuf,
    hex: String,
    results: mpsc::UnboundedSender<Input>,
    hashes: InOrderHashes,
    /// A write failed: later writes and hashes are skipped (the torrent stopped, and a hash
    /// of a half-written piece would blame the peers for our disk).
    faulted: bool,
}

impl Worker {
    fn run(&mut self, cmd: DiskCmd) {
        match cmd {
            DiskCmd::Op(DiskOp::Write { block, data }) => {
                if self.faulted {
                    return;
                }
                // Only failures are reported: the queue is in order, so the hash of the
                // piece comes after this write whatever happens.
                let begin = u64::from(block.begin);
                match self.storage.write_block(block.index as usize, begin, &data) {
                    Ok(()) => self.hashes.written(block.index, begin, &data),
                    Err(e) => {
                        self.faulted = true;
                        let _ = self.results.send(Input::WriteFailed { block, fault: DiskFault::from_storage(&e) });
                    }
                }
            }
            DiskCmd::Op(DiskOp::Read { key, block }) => {
                let result = self
                    .storage
                    .read_block(block.index as usize, u64::from(block.begin), u64::from(block.length))
                    .map_err(|e| e.to_string());
                let _ = self.results.send(Input::BlockRead { key, block, result });
            }
            DiskCmd::Op(DiskOp::Hash { index, blocks, always }) => {
                if self.faulted {
                    return;
                }
                // Its writes are done (this queue is in order).
                self.hash(index, blocks, always);
            }
            DiskCmd::SaveResume { have, faulted, reply } => {
                save_resume(&self.storage, &self.output, &self.hex, &have, faulted || self.faulted);
                let _ = reply.send(());
            }
        }
    }

    /// Checks a piece whose blocks are all written; the blocks are hashed one by one too when
    /// it fails, or whatever the outcome when `always` (smart ban compares them).
    fn hash(&mut self, index: u32, blocks: Vec<BlockRef>, always: bool) {
        let ok = match self.hashes.take(index) {
            Some((sha, from)) => self.storage.verify_piece_from(index as usize, sha, from),
            None => self.storage.verify_piece(index as usize),
        }
        .unwrap_or(false);
        let hashes = if !ok || always {
            blocks.into_iter().filter_map(|b| Some((b, self.block_hash(b)?))).collect()
        } else {
            Vec::new()
        };
        let _ = self.results.send(Input::PieceHashed { index, ok, blocks: hashes });
    }

    fn block_hash(&self, b: BlockRef) -> Option<[u8; 20]> {
        let data = self.storage.read_block(b.index as usize, u64::from(b.begin), u64::from(b.length)).ok()?;
        Some(Sha1::digest(&data).into())
    }
}

/// Flushes the payload and saves the resume record (which pieces are verified) next to it.
fn save_resume(storage: &Storage, output: &std::path::Path, hex: &str, have: &[bool], faulted: bool) {
    // After a disk fault the same disk most likely refuses the record too; that fault is
    // reported already, and without a record a re-run hashes what is there and loses no
    // verified piece, so this is no news worth a warning.
    let warn = |what: &str, e: &dyn std::fmt::Display| {
        if faulted {
            tracing::info!(error = %e, "could not {what}");
        } else {
            tracing::warn!(error = %e, "could not {what}");
        }
    };
    if let Err(e) = storage.flush() {
        warn("flush the payload to disk", &e);
    }
    let saved = resume::ResumeRecord::capture(storage, hex, have)
        .and_then(|record| record.save(&resume::resume_path(output, hex)?));
    if let Err(e) = saved {
        warn("save the resume record", &e);
    }
}
