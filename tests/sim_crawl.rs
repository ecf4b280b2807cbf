//! `kadswarm crawl`'s core in the simulated network (production node cores, virtual time):
//! 2,000 nodes, 500 info-hashes announced by random nodes with 1 to 20 peers each. The crawl
//! must find at least 95% of the info-hashes and 90% of their peers in bounded virtual time,
//! and still finish with a liar in the network that answers with itself and fake contacts.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kadswarm::crawl::sim::{drive, populate, score};
use kadswarm::crawl::{CrawlConfig, Crawler, Report};
use kadswarm::dht::compact::CompactNode;
use kadswarm::dht::krpc::{Body, Message, Method, Response};
use kadswarm::dht::node::Config;
use kadswarm::id::Id;
use kadswarm::sim::{Impostor, Network, SimConfig};
use rand::rngs::StdRng;
use rand::SeedableRng;

const NODES: usize = 2000;
const SWARMS: usize = 500;

fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn crawler_config() -> Config {
    Config { derive_id_from_ip: false, report_incoming_info_hashes: true, ..Config::default() }
}

/// Builds the network, announces the swarms, then adds the crawler's node.
fn setup(seed: u64) -> (Network, kadswarm::crawl::sim::Truth, usize) {
    let mut net = Network::new(SimConfig { seed, ..SimConfig::default() }, epoch());
    net.grow(NODES, Duration::from_millis(20), Duration::from_secs(120));
    let mut rng = StdRng::seed_from_u64(seed);
    let truth = populate(&mut net, SWARMS, 20, &[], &mut rng);
    let c = net.add_node_with(crawler_config(), &[0, 1, 2]);
    let t = net.now() + Duration::from_secs(10);
    net.run_until(t);
    (net, truth, c)
}

#[test]
fn a_crawl_of_two_thousand_nodes_finds_the_swarms_and_their_peers() {
    let wall = epoch();
    let (mut net, truth, c) = setup(0xc4a1);
    println!("network built and populated in {:.1}s wall", wall.elapsed().as_secs_f64());
    let start = net.now();
    let mut crawler = Crawler::new(CrawlConfig::default(), 7, start);
    let limit = start + Duration::from_secs(900);
    let reports = drive(&mut net, c, &mut crawler, limit);
    let cov = score(&truth, &reports);
    let s = crawler.stats();
    let queries_per_found = s.queries_sent as f64 / cov.info_hashes_found.max(1) as f64;
    println!(
        "crawl: {:.0}s virtual, {:.1}s wall; info-hashes {}/{} ({:.1}%), peers {}/{} ({:.1}%); \
         {} queries sent, {queries_per_found:.1} per info-hash found; {s:?}",
        net.now().saturating_duration_since(start).as_secs_f64(),
        wall.elapsed().as_secs_f64(),
        cov.info_hashes_found,
        cov.info_hashes,
        cov.info_hash_share() * 100.0,
        cov.peers_found,
        cov.peers,
        cov.peer_share() * 100.0,
        s.queries_sent,
    );
    assert!(crawler.is_finished(), "the crawl did not finish in its virtual time");
    assert!(reports.contains(&Report::RoundDone(0)));
    assert!(cov.info_hash_share() >= 0.95, "{cov:?}");
    assert!(cov.peer_share() >= 0.90, "{cov:?}");
    // Scrapes: our nodes answer them, so swarms come with estimates.
    let estimated = reports.iter().filter(|r| matches!(r, Report::Swarm(s) if s.leechers.is_some())).count();
    assert!(estimated >= cov.info_hashes_found * 9 / 10, "{estimated} swarms with estimates");
    // The budget: 150 Q/s on average, plus the burst.
    let secs = net.now().saturating_duration_since(start).as_secs_f64();
    assert!(s.queries_sent as f64 <= 150.0 * secs + 300.0 + 16.0 * 400.0, "{} queries in {secs}s", s.queries_sent);
}

/// Answers every query as `id` with itself and 8 made-up contacts next to the target (none
/// of which exist), samples of garbage, num 2^31 and interval 0.
fn liar(id: Id, addr: SocketAddr) -> Impostor {
    let mut n = 0u32;
    Box::new(move |_from, bytes| {
        let msg = Message::decode(bytes).ok()?;
        let Body::Query(q) = msg.body else { return None };
        n += 1;
        let target = match q.method {
            Method::FindNode { target } | Method::SampleInfohashes { target } => target,
            Method::GetPeers { info_hash, .. } => info_hash,
            _ => id,
        };
        let mut nodes = vec![CompactNode { id, addr }];
        for i in 0..8u32 {
            let mut fake = target;
            fake.0[16..20].copy_from_slice(&(n * 8 + i).to_be_bytes());
            let ip = (0x0b00_0000u32 + n * 8 + i).to_be_bytes();
            nodes.push(CompactNode { id: fake, addr: SocketAddr::from((ip, 6881)) });
        }
        let samples = (0..20u32).map(|i| Id::from_slice(&[(n + i) as u8; 20]).unwrap_or(id)).collect();
        let r = Response {
            id,
            nodes,
            samples: Some(samples),
            num: Some(1 << 31),
            interval: Some(0),
            token: Some(b"t".to_vec()),
            ..Default::default()
        };
        Some(Message { tid: msg.tid, version: None, ip: None, read_only: false, body: Body::Response(r) }.encode())
    })
}

#[test]
fn a_liar_answering_with_itself_and_fake_contacts_does_not_stop_the_crawl() {
    let (mut net, truth, c) = setup(0xbad);
    for l in [NODES / 3, 2 * NODES / 3] {
        let id = net.node(l).id();
        net.replace_with_impostor(l, liar(id, net.addr(l)));
    }
    let start = net.now();
    let mut crawler = Crawler::new(CrawlConfig::default(), 9, start);
    let reports = drive(&mut net, c, &mut crawler, start + Duration::from_secs(900));
    let cov = score(&truth, &reports);
    let s = crawler.stats();
    println!("with liars: {cov:?}; {s:?}; liar hits {}", net.impostor_hits(NODES / 3));
    assert!(crawler.is_finished(), "the crawl did not finish");
    assert!(cov.info_hash_share() >= 0.95 && cov.peer_share() >= 0.90, "{cov:?}");
    assert!(s.liars >= 1, "the fake contacts' referrers were not found out");
    // Its garbage samples are bounded: at most a reply's cap per visit, a few visits.
    let cfg = CrawlConfig::default();
    let garbage = s.info_hashes_known.saturating_sub(truth.len());
    assert!(garbage <= 2 * cfg.max_samples_per_reply * usize::from(cfg.max_visits_per_node), "{garbage}");
}
