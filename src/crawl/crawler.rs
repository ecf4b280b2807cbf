//! The crawler core: one query budget, discovery (BEP 51) and membership (BEP 5 get_peers
//! with BEP 33 scrapes) sharing it, rounds, and the reports the driver drains. Sans-IO: the
//! caller passes `now` and the node; nothing here reads a clock or touches a socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::dht::compact::CompactNode;
use crate::dht::krpc::Method;
use crate::dht::node::{Event, GetPeersOptions, Node};
use crate::id::Id;

use super::discovery::Discovery;
use super::membership::Membership;
use super::{CrawlConfig, Report};

/// Routing table entries needed before membership lookups start (BEP 5's k).
const MIN_TABLE_FOR_LOOKUPS: usize = 8;
/// A DHT smaller than k (a private or test network) never fills the table that far: after
/// this long, any non-empty table will do.
const JOIN_GRACE: Duration = Duration::from_secs(5);

/// Counters of a crawl, for progress lines and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlStats {
    pub round: u32,
    pub nodes_visited: u64,
    pub revisits: u64,
    pub nodes_known: usize,
    pub nodes_queued: usize,
    pub sample_replies: u64,
    pub samples_received: u64,
    pub direct_failures: u64,
    pub info_hashes_known: usize,
    /// Info-hashes first learned from queries that reached our node.
    pub info_hashes_from_queries: u64,
    pub info_hashes_dropped: u64,
    pub lookups_running: usize,
    pub lookups_done: u64,
    pub swarms_reported: u64,
    pub peers_reported: u64,
    pub peers_dropped: u64,
    /// Everything the node sent since the crawl started (lookups and maintenance included).
    pub queries_sent: u64,
    pub liars: u64,
    pub contacts_dropped: u64,
}

pub struct Crawler {
    cfg: CrawlConfig,
    rng: StdRng,
    started: Instant,
    last_now: Instant,
    /// The query budget, in queries; negative while lookups spend more than was saved.
    tokens: f64,
    refilled: Instant,
    queries_out_seen: Option<u64>,
    queries_sent: u64,
    discovery: Discovery,
    membership: Membership,
    reports: VecDeque<Report>,
    next_round_at: Option<Instant>,
    finished: bool,
    from_queries: u64,
    swarms_reported: u64,
    peers_reported: u64,
}

impl Crawler {
    pub fn new(cfg: CrawlConfig, seed: u64, now: Instant) -> Crawler {
        Crawler {
            rng: StdRng::seed_from_u64(seed),
            started: now,
            last_now: now,
            tokens: f64::from(cfg.burst.min(cfg.rate)),
            refilled: now,
            queries_out_seen: None,
            queries_sent: 0,
            discovery: Discovery::new(&cfg, now),
            membership: Membership::new(&cfg, now),
            reports: VecDeque::new(),
            next_round_at: None,
            finished: false,
            from_queries: 0,
            swarms_reported: 0,
            peers_reported: 0,
            cfg,
        }
    }

    /// Contacts to start from (a saved node list, routers' answers); the node's routing
    /// table is used as well whenever the walk runs dry.
    pub fn add_contacts(&mut self, nodes: &[CompactNode]) {
        for n in nodes {
            self.discovery.offer(*n, None);
        }
    }

    /// Info-hashes known from an earlier crawl (a resumed store): looked up again from the
    /// first round, like those discovery finds. The cap on info-hashes applies.
    pub fn add_info_hashes(&mut self, info_hashes: &[crate::id::InfoHash]) {
        for ih in info_hashes {
            self.membership.learn(*ih);
        }
    }

    /// An event the node produced; events of other users of the node are ignored.
    pub fn handle_event(&mut self, now: Instant, event: &Event) {
        self.last_now = self.last_now.max(now);
        match event {
            Event::QueryAnswered { id, response, .. } if self.discovery.owns(id) => {
                let m = &mut self.membership;
                self.discovery.on_answer(now, *id, response, &mut |ih| m.learn(ih));
            }
            Event::QueryFailed { id, .. } => self.discovery.on_failure(*id),
            Event::Peers { lookup, peers, .. } => self.membership.on_peers(*lookup, peers),
            Event::LookupDone(summary) => {
                if let Some(report) = self.membership.on_done(now, summary) {
                    self.swarms_reported += 1;
                    self.peers_reported += report.peers.len() as u64;
                    self.reports.push_back(Report::Swarm(report));
                }
            }
            Event::InfoHashSeen { info_hash, .. } if self.membership.learn(*info_hash) => self.from_queries += 1,
            _ => {}
        }
    }

    /// Refills the budget for the time passed and charges what the node sent since.
    fn account(&mut self, now: Instant, queries_out: u64) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * f64::from(self.cfg.rate)).min(f64::from(self.cfg.burst));
        self.refilled = self.refilled.max(now);
        if let Some(before) = self.queries_out_seen.replace(queries_out) {
            let spent = queries_out.saturating_sub(before);
            self.tokens -= spent as f64;
            self.queries_sent += spent;
        }
    }

    fn past_duration(&self, now: Instant) -> bool {
        self.cfg.duration.is_some_and(|d| now.saturating_duration_since(self.started) >= d)
    }

    /// Ends the round when it is done, and starts the next one when its time has come.
    fn advance_rounds(&mut self, now: Instant) {
        let m = &self.membership;
        let interval_over = now.saturating_duration_since(m.round_start) >= self.cfg.round_interval;
        if !m.round_closed && m.drained() && (self.discovery.idle() || interval_over || self.past_duration(now)) {
            let round = m.round;
            self.membership.round_closed = true;
            self.reports.push_back(Report::RoundDone(round));
            let more = self.cfg.rounds.is_none_or(|n| round + 1 < n);
            if more && !self.past_duration(now) {
                self.next_round_at = Some(self.membership.round_start + self.cfg.round_interval);
            } else {
                self.finished = true;
            }
        }
        if let Some(at) = self.next_round_at {
            if now >= at && !self.past_duration(now) {
                self.next_round_at = None;
                self.membership.next_round(now);
            }
        }
    }

    /// Sends what the budget and the caps allow: membership lookups first, then BEP 51
    /// queries to the next nodes of the walk.
    pub fn step(&mut self, now: Instant, node: &mut Node) {
        self.last_now = self.last_now.max(now);
        self.account(now, node.stats().queries_out);
        if self.discovery.fresh_len() == 0 && self.discovery.in_flight() == 0 && !self.finished {
            let target = Id::random(&mut self.rng);
            for n in node.table().closest(&target, 256, true) {
                self.discovery.offer(n, None);
            }
        }
        self.advance_rounds(now);
        if self.finished || self.past_duration(now) {
            return;
        }
        let options = GetPeersOptions { scrape: self.cfg.scrape };
        loop {
            self.account(now, node.stats().queries_out);
            let in_flight = self.discovery.in_flight() + self.membership.running() * self.cfg.lookup_alpha;
            if self.tokens < 1.0 || in_flight >= self.cfg.max_in_flight {
                break;
            }
            // A full report queue pauses membership: the driver is behind.
            // A lookup from an empty table would end at once with nothing: wait for the join.
            let table = node.table().len();
            let joined = table >= MIN_TABLE_FOR_LOOKUPS
                || (table > 0 && now.saturating_duration_since(self.started) >= JOIN_GRACE);
            if joined && self.membership.running() < self.cfg.max_lookups && self.reports.len() < self.cfg.max_reports {
                if let Some(ih) = self.membership.next_info_hash() {
                    let lookup = node.get_peers_with(now, ih, options);
                    self.membership.started(lookup, ih);
                    continue;
                }
            }
            let Some((contact, target, referrer)) = self.discovery.next_contact(now, &mut self.rng) else { break };
            match node.query(now, contact.addr, Some(contact.id), Method::SampleInfohashes { target }) {
                Some(q) => self.discovery.sent(q, contact, referrer),
                None => break,
            }
        }
    }

    /// When `step` should next be called even if no event comes.
    pub fn next_deadline(&self) -> Instant {
        let mut next = self.last_now + Duration::from_secs(1);
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / f64::from(self.cfg.rate.max(1));
            next = next.min(self.refilled + Duration::from_secs_f64(wait));
        }
        for t in [self.discovery.next_revisit(), self.next_round_at].into_iter().flatten() {
            next = next.min(t);
        }
        next
    }

    pub fn poll_report(&mut self) -> Option<Report> {
        self.reports.pop_front()
    }

    /// The last round is done (or the duration is over) and no lookup runs.
    pub fn is_finished(&self) -> bool {
        self.finished && self.membership.running() == 0
    }

    pub fn stats(&self) -> CrawlStats {
        let d = &self.discovery.stats;
        CrawlStats {
            round: self.membership.round,
            nodes_visited: d.visits,
            revisits: d.revisits,
            nodes_known: self.discovery.known_len(),
            nodes_queued: self.discovery.fresh_len(),
            sample_replies: d.sample_replies,
            samples_received: d.samples_received,
            direct_failures: d.failures,
            info_hashes_known: self.membership.known(),
            info_hashes_from_queries: self.from_queries,
            info_hashes_dropped: self.membership.dropped_info_hashes,
            lookups_running: self.membership.running(),
            lookups_done: self.membership.lookups_done,
            swarms_reported: self.swarms_reported,
            peers_reported: self.peers_reported,
            peers_dropped: self.membership.dropped_peers,
            queries_sent: self.queries_sent,
            liars: d.liars,
            contacts_dropped: d.fresh_dropped,
        }
    }

    pub fn config(&self) -> &CrawlConfig {
        &self.cfg
    }
}
