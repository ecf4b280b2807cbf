//! The bootstrap role of the node (issue 10 item 6): a router like router.utorrent.com.
//!
//! Besides its routing table, a bootstrap node keeps a [`Pool`] of up to a million nodes and
//! answers find_node and get_peers (and everything else that asks for nodes) from the pool
//! entries closest to the target, so that the many clients joining through it are sent all
//! over the DHT rather than to the same few table entries. It stores no peers.
//!
//! A node enters the pool only by answering a ping whose transaction id is a [`Cookies`]
//! cookie for its address: a querier not yet in the pool is pinged (within a budget per
//! second, never outside our address scope), and nothing is remembered until the answer
//! comes. Responses with a 4-byte transaction id are cookie answers and are routed here
//! before the transaction table sees them. Once a second a slice of the pool is swept:
//! entries silent for `max_age` are pinged again with a cookie, and dropped after `grace`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use crate::dht::bep42;
use crate::dht::compact::CompactNode;
use crate::dht::cookie::{Cookies, COOKIE_LEN};
use crate::dht::krpc::{Body, Message, Method, Query, Response, Want};
use crate::dht::pool::{Pool, PoolConfig, PoolInsert};
use crate::dht::routing::Contact;
use crate::id::Id;
use crate::net::token_bucket::TokenBucket;

use super::Node;

/// How often a slice of the pool is swept (and the cookie secret checked for rotation).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// What the bootstrap role did, since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootstrapStats {
    /// Cookie pings to queriers not in the pool.
    pub verify_pings: u64,
    /// Cookie pings to pool entries silent for `max_age`.
    pub reverify_pings: u64,
    /// Verification pings not sent: over the budget, or an address outside our scope.
    pub pings_suppressed: u64,
    /// Responses with a 4-byte transaction id that is not the cookie of their source.
    pub bad_cookies: u64,
    pub added: u64,
    pub refreshed: u64,
    pub replaced: u64,
    /// Queriers and answers with ids BEP 42 does not allow for their address.
    pub refused_invalid_id: u64,
    pub refused_read_only: u64,
    pub refused_full: u64,
    /// Entries dropped after staying silent.
    pub expired: u64,
}

/// The state of the bootstrap role: the pool, the cookie secrets and the ping budget.
pub(super) struct Bootstrap {
    pool: Pool,
    cookies: Cookies,
    /// Verification pings we may send: `verify_pings_per_sec`, a burst of one second's worth.
    pings: TokenBucket,
    next_sweep: Instant,
    stats: BootstrapStats,
}

impl Bootstrap {
    pub(super) fn new(config: PoolConfig, now: Instant, secrets: &mut StdRng) -> Bootstrap {
        Bootstrap {
            cookies: Cookies::new(now, config.cookie_rotation, secrets),
            pool: Pool::new(config, now),
            pings: TokenBucket::new(config.verify_pings_per_sec, config.verify_pings_per_sec, now),
            next_sweep: now + SWEEP_INTERVAL,
            stats: BootstrapStats::default(),
        }
    }

    fn take_ping(&mut self, now: Instant) -> bool {
        self.pings.take(now)
    }

    fn count(&mut self, outcome: PoolInsert) {
        let s = &mut self.stats;
        match outcome {
            PoolInsert::Added => s.added += 1,
            PoolInsert::Refreshed => s.refreshed += 1,
            PoolInsert::Replaced { .. } => s.replaced += 1,
            PoolInsert::InvalidId => s.refused_invalid_id += 1,
            PoolInsert::Full => s.refused_full += 1,
        }
    }
}

impl Node {
    /// The pool of verified nodes, in the bootstrap role.
    pub fn pool(&self) -> Option<&Pool> {
        self.bootstrap.as_deref().map(|b| &b.pool)
    }

    /// For the driver's saving only: a pool changed this way has not been verified.
    pub(crate) fn pool_mut(&mut self) -> Option<&mut Pool> {
        self.bootstrap.as_deref_mut().map(|b| &mut b.pool)
    }

    pub fn bootstrap_stats(&self) -> Option<&BootstrapStats> {
        self.bootstrap.as_deref().map(|b| &b.stats)
    }

    /// Takes in the pool saved by an earlier run (BEP 42 still applies); its entries are
    /// pinged again by the sweep soon. Returns how many entered; 0 in the normal role.
    pub fn load_pool(&mut self, now: Instant, nodes: &[CompactNode]) -> usize {
        match self.bootstrap.as_deref_mut() {
            Some(b) => b.pool.load(now, nodes),
            None => 0,
        }
    }

    /// A querier we may not know: pings it with a cookie unless it is in the pool already.
    /// Returns whether a ping went out (the routing table needs no other confirmation).
    pub(super) fn pool_verify(&mut self, now: Instant, node: CompactNode) -> bool {
        let own = self.id();
        let Some(b) = self.bootstrap.as_deref_mut() else { return false };
        if node.id == own || b.pool.contains(&node) {
            return false;
        }
        if !bep42::is_valid_id(&node.id, node.addr.ip()) {
            // It would answer with the same id, which the pool refuses: save the ping.
            b.stats.refused_invalid_id += 1;
            return false;
        }
        if !self.config.scope.admits(node.addr) || !b.take_ping(now) {
            b.stats.pings_suppressed += 1;
            return false;
        }
        b.stats.verify_pings += 1;
        self.send_cookie_ping(node.addr);
        true
    }

    fn send_cookie_ping(&mut self, to: SocketAddr) {
        let Some(b) = self.bootstrap.as_deref() else { return };
        let msg = Message {
            tid: b.cookies.tid(to).to_vec(),
            version: self.config.version.clone(),
            ip: None,
            read_only: false,
            body: Body::Query(Query { id: self.id(), method: Method::Ping, want: Want::default() }),
        };
        self.stats.queries_out += 1;
        self.send(to, msg.encode());
    }

    /// A response that may answer a cookie ping. Returns false when it is not ours to handle
    /// (not the bootstrap role, or not a cookie-length transaction id).
    pub(super) fn pool_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: &[u8],
        read_only: bool,
        r: &Response,
    ) -> bool {
        let own = self.id();
        let Some(b) = self.bootstrap.as_deref_mut() else { return false };
        if tid.len() != COOKIE_LEN {
            return false;
        }
        if !b.cookies.verify(from, tid) {
            b.stats.bad_cookies += 1;
            self.stats.unmatched_responses += 1;
            return true;
        }
        self.stats.responses_in += 1;
        if read_only {
            // BEP 43: a read-only node must not be handed out to others.
            b.stats.refused_read_only += 1;
            return true;
        }
        if r.id == own {
            return true;
        }
        let node = CompactNode { id: r.id, addr: from };
        let outcome = b.pool.insert(now, node);
        b.count(outcome);
        // It answered a query of ours, as good a contact as any for the routing table.
        let outcome = self.table_for(node.addr).heard_from(now, node, Contact::Response);
        self.ping_list(now, outcome);
        true
    }

    /// Sweeps a slice of the pool and rotates the cookie secret when due.
    pub(super) fn pool_tick(&mut self, now: Instant) {
        let Some(b) = self.bootstrap.as_deref_mut() else { return };
        if now < b.next_sweep {
            return;
        }
        b.next_sweep = now + SWEEP_INTERVAL;
        if now >= b.cookies.next_rotation() {
            b.cookies.rotate_if_due(now, &mut self.secrets);
            // Every rotation (10 minutes), a line for the operator.
            let (v4, v6) = b.pool.family_lens();
            let s = &b.stats;
            tracing::info!(
                v4,
                v6,
                added = s.added,
                replaced = s.replaced,
                expired = s.expired,
                verify_pings = s.verify_pings,
                reverify_pings = s.reverify_pings,
                pings_suppressed = s.pings_suppressed,
                bad_cookies = s.bad_cookies,
                refused_invalid_id = s.refused_invalid_id,
                refused_full = s.refused_full,
                "bootstrap pool"
            );
        }
        let before = b.pool.len();
        let stale = b.pool.sweep(now);
        b.stats.expired += (before - b.pool.len()) as u64;
        b.stats.reverify_pings += stale.len() as u64;
        for n in stale {
            self.send_cookie_ping(n.addr);
        }
    }

    pub(super) fn pool_deadline(&self) -> Option<Instant> {
        self.bootstrap.as_deref().map(|b| b.next_sweep)
    }

    /// The nodes of a bootstrap node's answer: the pool entries closest to `target` of each
    /// family asked for, topped up while the pool is young with confirmed routing-table
    /// nodes, never unconfirmed ones: a router must not hand out addresses that never
    /// answered (a spoofed query would otherwise aim its clients at a victim).
    pub(super) fn pool_nodes_for(
        &self,
        target: &Id,
        from: SocketAddr,
        want: Want,
    ) -> (Vec<CompactNode>, Vec<CompactNode>) {
        let Some(b) = self.bootstrap.as_deref() else { return (Vec::new(), Vec::new()) };
        let k = self.config.lookup.k;
        let (want4, want6) = if want.n4 || want.n6 { (want.n4, want.n6) } else { (from.is_ipv4(), from.is_ipv6()) };
        let pick = |v6: bool| {
            let mut nodes = b.pool.closest(target, v6, k);
            if nodes.len() < k {
                let table = self.family_table(v6).closest(target, k * 2, false);
                let more = table.into_iter().filter(|n| n.addr.is_ipv6() == v6);
                for n in more {
                    if !nodes.iter().any(|m| m.addr == n.addr) {
                        nodes.push(n);
                    }
                }
                nodes.sort_by_key(|n| n.id.distance(target));
                nodes.truncate(k);
            }
            nodes
        };
        (if want4 { pick(false) } else { Vec::new() }, if want6 { pick(true) } else { Vec::new() })
    }
}
