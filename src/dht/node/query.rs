//! What the node offers a crawler (issue 11): direct queries of any method to one node
//! (BEP 51 sample_infohashes above all) answered by events, get_peers lookups that scrape
//! (BEP 33), and the info-hashes of the get_peers and announce_peer queries (BEP 5) that
//! reach us, reported when the configuration asks for them.
//!
//! Every event queued here is bounded: answers and failures by the transaction table (one
//! event per query the caller chose to send), incoming info-hashes by
//! `Config::max_info_hash_events`, beyond which they are counted and dropped, so a slow
//! driver cannot make a flood of queries grow the queue.

use std::net::SocketAddr;
use std::time::Instant;

use crate::dht::krpc::{Method, Response};
use crate::dht::lookup::{LookupId, LookupKind};
use crate::dht::transactions::Purpose;
use crate::id::{InfoHash, NodeId};

use super::{Event, Node};

/// A direct query's handle, echoed in its `QueryAnswered` or `QueryFailed` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(pub u64);

/// Why a direct query got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFailure {
    Timeout,
    /// A KRPC error: the node is alive but would not answer (e.g. 204, method unknown).
    Error(i64),
}

/// Options of a get_peers lookup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetPeersOptions {
    /// BEP 33: ask with `scrape: 1` and report seed/leecher estimates in the summary.
    pub scrape: bool,
}

/// The node's state for direct queries and incoming info-hash reports.
#[derive(Debug, Default)]
pub(super) struct Direct {
    next: u64,
    /// `InfoHashSeen` events queued and not yet polled.
    queued_seen: usize,
    /// `InfoHashSeen` events dropped because the queue was at its cap.
    pub(super) seen_dropped: u64,
}

impl Node {
    /// Sends `method` to `addr`. `node_id`, when known, must match the answer's id for the
    /// responder to enter the routing table. `None` when the transaction table is full.
    pub fn query(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        node_id: Option<NodeId>,
        method: Method,
    ) -> Option<QueryId> {
        let id = QueryId(self.direct.next);
        if !self.send_query(now, addr, node_id, method, Purpose::Direct(id)) {
            return None;
        }
        self.direct.next += 1;
        Some(id)
    }

    /// A get_peers lookup with options; `get_peers` is this with the defaults.
    pub fn get_peers_with(&mut self, now: Instant, info_hash: InfoHash, options: GetPeersOptions) -> LookupId {
        self.start_user_lookup(now, LookupKind::GetPeers, info_hash, options.scrape)
    }

    /// `InfoHashSeen` events dropped at the queue's cap since the node started.
    pub fn info_hash_events_dropped(&self) -> u64 {
        self.direct.seen_dropped
    }

    pub(super) fn direct_answered(&mut self, id: QueryId, from: SocketAddr, response: Response) {
        self.events.push_back(Event::QueryAnswered { id, from, response: Box::new(response) });
    }

    pub(super) fn direct_failed(&mut self, id: QueryId, addr: SocketAddr, failure: QueryFailure) {
        self.events.push_back(Event::QueryFailed { id, addr, failure });
    }

    /// A get_peers or (valid) announce_peer query for `info_hash` reached us.
    pub(super) fn note_info_hash(&mut self, info_hash: InfoHash, from: SocketAddr, announced: bool) {
        if !self.config.report_incoming_info_hashes {
            return;
        }
        if self.direct.queued_seen >= self.config.max_info_hash_events {
            self.direct.seen_dropped += 1;
            return;
        }
        self.direct.queued_seen += 1;
        self.events.push_back(Event::InfoHashSeen { info_hash, from, announced });
    }

    /// Called for every event polled, to keep the count of queued info-hash events.
    pub(super) fn event_polled(&mut self, event: &Event) {
        if matches!(event, Event::InfoHashSeen { .. }) {
            self.direct.queued_seen = self.direct.queued_seen.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests;
