//! How the node answers queries (BEP 5 ping, find_node, get_peers, announce_peer; BEP 51
//! sample_infohashes; BEP 33 scrapes; BEP 32 `want`; BEP 42 `ip`), and malformed input (error 203/204).

use std::net::SocketAddr;
use std::time::Instant;

use crate::dht::compact::CompactNode;
use crate::dht::krpc::{
    Body, DecodeFailure, KrpcError, Message, Method, Query, Response, Want, ERR_METHOD_UNKNOWN, ERR_PROTOCOL,
};
use crate::dht::routing::RoutingTable;
use crate::dht::stats::ReplyKind;
use crate::id::Id;

use super::Node;

/// Peers in a get_peers answer that also carries the BEP 33 filters.
pub const MAX_VALUES_WITH_SCRAPE: usize = 32;

impl Node {
    pub(super) fn answer_malformed(&mut self, from: SocketAddr, failure: DecodeFailure) {
        match failure.tid {
            // Never answer an error with an error: two confused nodes would echo forever.
            Some(tid) if failure.answerable => {
                self.stats.malformed_answered += 1;
                tracing::debug!(%from, error = %failure.error, "malformed KRPC message, answering 203");
                self.send_error(from, tid, ERR_PROTOCOL, &failure.error.to_string());
            }
            _ => {
                self.stats.malformed_dropped += 1;
                tracing::debug!(%from, error = %failure.error, "dropping malformed datagram");
            }
        }
    }

    fn send_error(&mut self, to: SocketAddr, tid: Vec<u8>, code: i64, message: &str) {
        let msg = Message {
            tid,
            version: self.config.version.clone(),
            ip: None,
            read_only: false,
            body: Body::Error(KrpcError { code, message: message.chars().take(128).collect() }),
        };
        self.send_reply(to, ReplyKind::Error, msg.encode());
    }

    fn send_response(&mut self, to: SocketAddr, tid: Vec<u8>, kind: ReplyKind, r: Response) {
        let msg = Message {
            tid,
            version: self.config.version.clone(),
            // BEP 42: tell the querier the address we see it at.
            ip: Some(to),
            read_only: false,
            body: Body::Response(r),
        };
        self.send_reply(to, kind, msg.encode());
    }

    fn send_reply(&mut self, to: SocketAddr, kind: ReplyKind, payload: Vec<u8>) {
        self.stats.replies.record(kind, payload.len());
        self.send(to, payload);
    }

    /// The closest nodes we know to `target`, split by family as `want` (BEP 32) asks.
    fn nodes_for(&self, target: &Id, from: SocketAddr, want: Want) -> (Vec<CompactNode>, Vec<CompactNode>) {
        if self.bootstrap.is_some() {
            return self.pool_nodes_for(target, from, want);
        }
        let k = self.config.lookup.k;
        // Nodes that answered us when there are k of them; in a young or small network,
        // unconfirmed nodes are better than none. Asked up front, so a young table (every
        // querier unconfirmed) is searched once per answer, not twice.
        let closest = |table: &RoutingTable| table.closest(target, k, !table.has_confirmed(k));
        let (want4, want6) = if want.n4 || want.n6 { (want.n4, want.n6) } else { (from.is_ipv4(), from.is_ipv6()) };
        let (v4, v6): (Vec<_>, Vec<_>) = match &self.table6 {
            // Dual-stack: each family's k closest from its own table, so that asking for both
            // does not halve either.
            Some(t6) => {
                (if want4 { closest(&self.table) } else { Vec::new() }, if want6 { closest(t6) } else { Vec::new() })
            }
            // Single-stack: the one table, split by family.
            None => closest(&self.table).into_iter().partition(|n| n.addr.is_ipv4()),
        };
        let family = |nodes: Vec<CompactNode>, v6: bool, wanted: bool| {
            if wanted {
                nodes.into_iter().filter(|n| n.addr.is_ipv6() == v6).collect()
            } else {
                Vec::new()
            }
        };
        (family(v4, false, want4), family(v6, true, want6))
    }

    pub(super) fn answer_query(&mut self, now: Instant, from: SocketAddr, tid: Vec<u8>, q: Query) {
        self.stats.queries_in += 1;
        if self.config.read_only {
            // BEP 43: a read-only node does not answer.
            return;
        }
        let own = self.id();
        let mut r = Response { id: own, ..Default::default() };
        let kind = match q.method {
            Method::Ping => {
                self.stats.pings_in += 1;
                ReplyKind::Ping
            }
            Method::FindNode { target } => {
                self.stats.find_nodes_in += 1;
                (r.nodes, r.nodes6) = self.nodes_for(&target, from, q.want);
                ReplyKind::FindNode
            }
            Method::GetPeers { info_hash, .. } if self.bootstrap.is_some() => {
                // A bootstrap node stores no peers: nodes only, no values, no token to
                // announce with.
                self.stats.get_peers_in += 1;
                (r.nodes, r.nodes6) = self.nodes_for(&info_hash, from, q.want);
                ReplyKind::GetPeers
            }
            Method::AnnouncePeer { .. } if self.bootstrap.is_some() => {
                self.stats.announces_in += 1;
                return self.send_error(from, tid, ERR_PROTOCOL, "a bootstrap node stores no peers");
            }
            Method::GetPeers { info_hash, scrape, .. } => {
                self.stats.get_peers_in += 1;
                self.note_info_hash(info_hash, from, false);
                // A store with no room for this swarm hands out no token, so the querier
                // announces to the neighbouring nodes instead of being refused here.
                if self.store.has_room_for(&info_hash) {
                    r.token = Some(self.store.token_for(from.ip()));
                } else {
                    self.stats.tokens_withheld += 1;
                }
                r.values = self.store.get_peers(now, &info_hash, from.is_ipv6(), &mut self.rng);
                if scrape {
                    // BEP 33. Unlike libtorrent we keep values in a scrape answer, so one query
                    // gives both; fewer of them, so the 512 bytes of filters still fit the
                    // reply-size budget of an unverified querier.
                    r.values.truncate(MAX_VALUES_WITH_SCRAPE);
                    if let Some((seeds, peers)) = self.store.scrape(now, &info_hash) {
                        r.bf_seeds = Some(Box::new(seeds));
                        r.bf_peers = Some(Box::new(peers));
                    }
                }
                (r.nodes, r.nodes6) = self.nodes_for(&info_hash, from, q.want);
                ReplyKind::GetPeers
            }
            Method::AnnouncePeer { info_hash, port, implied_port, token, seed } => {
                self.stats.announces_in += 1;
                if !self.store.token_valid(from.ip(), &token) {
                    self.stats.bad_tokens += 1;
                    return self.send_error(from, tid, ERR_PROTOCOL, "bad token");
                }
                self.note_info_hash(info_hash, from, true);
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    return self.send_error(from, tid, ERR_PROTOCOL, "port 0");
                }
                if !self.store.announce(now, info_hash, SocketAddr::new(from.ip(), port), seed).stored() {
                    // Still answered: the querier did nothing wrong that an error would fix.
                    self.stats.announces_refused += 1;
                }
                ReplyKind::AnnouncePeer
            }
            Method::SampleInfohashes { target } => {
                self.stats.samples_in += 1;
                let (samples, num) = self.store.sample(&mut self.rng);
                r.samples = Some(samples);
                r.num = Some(num as i64);
                r.interval = Some(self.store.sample_interval().as_secs() as i64);
                (r.nodes, r.nodes6) = self.nodes_for(&target, from, q.want);
                ReplyKind::SampleInfohashes
            }
            Method::Unknown { target: Some(target), .. } => {
                // Forward compatibility: an unknown method aimed at a key is a find_node.
                self.stats.unknown_methods_in += 1;
                (r.nodes, r.nodes6) = self.nodes_for(&target, from, q.want);
                ReplyKind::Unknown
            }
            Method::Unknown { target: None, .. } => {
                self.stats.unknown_methods_in += 1;
                return self.send_error(from, tid, ERR_METHOD_UNKNOWN, "Method Unknown");
            }
        };
        self.send_response(from, tid, kind, r);
    }
}
