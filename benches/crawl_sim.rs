//! The crawl strategy against a naive crawler, both in the same simulated network and the
//! same virtual time (production node cores, no sockets). The naive crawler runs get_peers
//! lookups on random targets at the same query rate and learns info-hashes only from what
//! they and the queries reaching its node reveal, as passive crawlers do. Both nodes join
//! before the swarms are announced, so both hear the announce traffic.
//!
//! Prints info-hashes found per 1,000 queries sent for each and their ratio (target >= 5x),
//! peers found per query, and the queries per second the crawler core sustains on one core
//! (CPU time inside `Crawler::step` and `handle_event`, not the simulated network's).
//!
//! Small by default (1,000 nodes, 200 swarms); `CRAWL_SIM_FULL=1` runs the 2,000
//! nodes and 500 swarms. `cargo bench --bench crawl_sim`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use kadswarm::crawl::sim::{populate, revealed, score};
use kadswarm::crawl::{CrawlConfig, Crawler, Report};
use kadswarm::dht::lookup::LookupId;
use kadswarm::dht::node::{Config, Event, Node};
use kadswarm::id::{Id, InfoHash};
use kadswarm::sim::{Network, SimConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// get_peers on random targets within a query budget; learns what events reveal.
struct Naive {
    rate: f64,
    tokens: f64,
    last: Instant,
    seen_out: Option<u64>,
    queries: u64,
    running: HashSet<LookupId>,
    learned: HashSet<InfoHash>,
    peers: HashSet<std::net::SocketAddr>,
    rng: StdRng,
}

impl Naive {
    fn step(&mut self, now: Instant, node: &mut Node) {
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.rate).min(300.0);
        self.last = now;
        loop {
            let out = node.stats().queries_out;
            if let Some(before) = self.seen_out.replace(out) {
                self.tokens -= (out - before) as f64;
                self.queries += out - before;
            }
            if self.tokens < 1.0 || self.running.len() >= 16 || node.table().len() < 8 {
                break;
            }
            let target = Id::random(&mut self.rng);
            self.running.insert(node.get_peers(now, target));
        }
    }

    fn handle_event(&mut self, ev: &Event) {
        if let Some(ih) = revealed(ev) {
            self.learned.insert(ih);
        }
        match ev {
            Event::Peers { peers, .. } => self.peers.extend(peers.iter().copied()),
            Event::LookupDone(s) => {
                self.running.remove(&s.id);
            }
            _ => {}
        }
    }
}

fn main() {
    #[allow(clippy::disallowed_methods)]
    let wall = Instant::now();
    let full = std::env::var_os("CRAWL_SIM_FULL").is_some();
    let (nodes, swarms) = if full { (2000, 500) } else { (1000, 200) };
    #[allow(clippy::disallowed_methods)]
    let epoch = Instant::now();
    let mut net = Network::new(SimConfig { seed: 51, ..SimConfig::default() }, epoch);
    net.grow(nodes, Duration::from_millis(20), Duration::from_secs(120));
    let listener = Config { derive_id_from_ip: false, report_incoming_info_hashes: true, ..Config::default() };
    let k = net.add_node_with(listener.clone(), &[0, 1, 2]);
    let n = net.add_node_with(listener, &[3, 4, 5]);
    let t = net.now() + Duration::from_secs(60);
    net.run_until(t);
    let mut rng = StdRng::seed_from_u64(51);
    let truth = populate(&mut net, swarms, 20, &[k, n], &mut rng);

    let start = net.now();
    let cfg = CrawlConfig::default();
    let rate = f64::from(cfg.rate);
    let mut crawler = Crawler::new(cfg, 5, start);
    let mut naive = Naive {
        rate,
        tokens: rate,
        last: start,
        seen_out: None,
        queries: 0,
        running: HashSet::new(),
        learned: HashSet::new(),
        peers: HashSet::new(),
        rng: StdRng::seed_from_u64(6),
    };
    let mut reports: Vec<Report> = Vec::new();
    let mut core = Duration::ZERO;
    let limit = start + Duration::from_secs(1800);
    while net.now() < limit && !crawler.is_finished() {
        let t = (net.now() + Duration::from_millis(20)).min(crawler.next_deadline().max(net.now()));
        net.run_until(t.max(net.now() + Duration::from_millis(1)));
        let now = net.now();
        let events = net.take_events(k);
        #[allow(clippy::disallowed_methods)]
        let t0 = Instant::now();
        for ev in &events {
            crawler.handle_event(now, ev);
        }
        core += t0.elapsed();
        net.with_node(k, |node, now| {
            #[allow(clippy::disallowed_methods)]
            let t0 = Instant::now();
            crawler.step(now, node);
            core += t0.elapsed();
        });
        reports.extend(std::iter::from_fn(|| crawler.poll_report()));
        for ev in net.take_events(n) {
            naive.handle_event(&ev);
        }
        net.with_node(n, |node, now| naive.step(now, node));
    }
    let virtual_secs = net.now().saturating_duration_since(start).as_secs_f64();
    let s = crawler.stats();
    let cov = score(&truth, &reports);
    let ours = s.info_hashes_known.min(truth.len()) as f64;
    let found_naive = naive.learned.iter().filter(|ih| truth.contains_key(*ih)).count() as f64;
    let per_k = |found: f64, q: u64| found * 1000.0 / q.max(1) as f64;
    let (ours_k, naive_k) = (per_k(ours, s.queries_sent), per_k(found_naive, naive.queries));
    let naive_peers = naive.peers.len() as f64;
    println!("{nodes} nodes, {swarms} swarms ({} peers), {virtual_secs:.0}s virtual, same run for both", cov.peers);
    println!(
        "kadswarm: {} queries, {} info-hashes ({:.1}%), {:.1} per 1,000 queries; {} peers, {:.3} peers/query",
        s.queries_sent,
        ours,
        cov.info_hash_share() * 100.0,
        ours_k,
        cov.peers_found,
        cov.peers_found as f64 / s.queries_sent.max(1) as f64
    );
    println!(
        "naive:    {} queries, {} info-hashes, {:.1} per 1,000 queries; {} peers, {:.3} peers/query",
        naive.queries,
        found_naive,
        naive_k,
        naive_peers,
        naive_peers / naive.queries.max(1) as f64
    );
    let ratio = if naive_k > 0.0 { format!("{:.1}x", ours_k / naive_k) } else { "infinite (naive found none)".into() };
    println!("info-hashes per 1,000 queries, kadswarm / naive: {ratio} (target >= 5x)");
    println!(
        "crawler core: {:.3}s CPU for {} queries sent = {:.0} queries/s on one core; wall {:.1}s",
        core.as_secs_f64(),
        s.queries_sent,
        s.queries_sent as f64 / core.as_secs_f64().max(1e-9),
        wall.elapsed().as_secs_f64()
    );
}
