//! The crawler core against a scripted network: every query the crawler's node sends is
//! answered at once by a closure (or not at all), in virtual time. Hostile answers, each
//! cap, the query budget, BEP 51 intervals and rounds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::dht::compact::CompactNode;
use crate::dht::krpc::{Body, Message, Method, Response};
use crate::dht::node::{Config, Event, Node};
use crate::id::Id;

use crate::clock::now as t0;

type Answer = Box<dyn FnMut(SocketAddr, &Method) -> Option<Response>>;

struct Harness {
    now: Instant,
    node: Node,
    crawler: Crawler,
    answer: Answer,
    /// When each address was sent each query.
    sent: HashMap<SocketAddr, Vec<(Instant, Method)>>,
    reports: Vec<Report>,
}

impl Harness {
    fn new(cfg: CrawlConfig, answer: Answer) -> Harness {
        let now = t0();
        let config = Config { derive_id_from_ip: false, report_incoming_info_hashes: true, ..Config::default() };
        Harness {
            now,
            node: Node::new(config, Some(Id([0x11; 20])), 1, now),
            crawler: Crawler::new(cfg, 2, now),
            answer,
            sent: HashMap::new(),
            reports: Vec::new(),
        }
    }

    fn tick(&mut self, dt: Duration) {
        self.now += dt;
        if self.node.next_deadline() <= self.now {
            self.node.handle_timeout(self.now);
        }
        self.crawler.step(self.now, &mut self.node);
        while let Some(t) = self.node.poll_transmit() {
            let Ok(Message { tid, body: Body::Query(q), .. }) = Message::decode(&t.payload) else { continue };
            self.sent.entry(t.to).or_default().push((self.now, q.method.clone()));
            if let Some(r) = (self.answer)(t.to, &q.method) {
                let m = Message { tid, version: None, ip: None, read_only: false, body: Body::Response(r) };
                self.node.handle_packet(self.now, t.to, &m.encode());
            }
        }
        while let Some(ev) = self.node.poll_event() {
            self.crawler.handle_event(self.now, &ev);
        }
        self.reports.extend(std::iter::from_fn(|| self.crawler.poll_report()));
    }

    fn run(&mut self, total: Duration, dt: Duration) {
        let end = self.now + total;
        while self.now < end {
            self.tick(dt);
        }
    }
}

/// Each node in its own /24, as the routing table's subnet limit expects.
fn addr(i: u32) -> SocketAddr {
    SocketAddr::from(((0x0a00_0001 + (i << 8)).to_be_bytes(), 6881))
}

fn contact(i: u32) -> CompactNode {
    let mut id = Id([0; 20]);
    id.0[..4].copy_from_slice(&(i.wrapping_mul(2_654_435_761)).to_be_bytes());
    CompactNode { id, addr: addr(i) }
}

#[test]
fn a_hostile_node_cannot_loop_flood_or_grow_the_crawler() {
    // Answers as itself, naming itself, with 10,000 garbage samples, num 2^31, interval 0.
    let me = contact(1);
    let mut n = 0u8;
    let answer: Answer = Box::new(move |_, method| {
        n = n.wrapping_add(1);
        let samples =
            (0..10_000u32).map(|i| Id::from_slice(&[&[n; 16][..], &i.to_be_bytes()].concat()).unwrap()).collect();
        let samples = matches!(method, Method::SampleInfohashes { .. }).then_some(samples);
        Some(Response {
            id: me.id,
            nodes: vec![me; 8],
            samples,
            num: Some(1 << 31),
            interval: Some(0),
            ..Default::default()
        })
    });
    // No round limit, so discovery keeps going for the liar's revisits.
    let cfg = CrawlConfig { rounds: None, ..CrawlConfig::default() };
    let mut h = Harness::new(cfg.clone(), answer);
    h.crawler.add_contacts(&[me]);
    h.run(Duration::from_secs(4 * 3600), Duration::from_millis(500));
    let s = h.crawler.stats();
    let samples_asked = h.sent[&me.addr].iter().filter(|(_, m)| matches!(m, Method::SampleInfohashes { .. })).count();
    println!("{s:?}; {samples_asked} sample queries to the liar");
    assert!(samples_asked <= usize::from(cfg.max_visits_per_node), "{samples_asked} visits");
    // interval 0 is read as the minimum: no two visits closer than that.
    let times: Vec<Instant> = h.sent[&me.addr]
        .iter()
        .filter(|(_, m)| matches!(m, Method::SampleInfohashes { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert!(times.windows(2).all(|w| w[1] - w[0] >= cfg.min_sample_interval), "{times:?}");
    // Each reply was read for the cap's worth of samples only.
    assert!(s.samples_received <= (cfg.max_samples_per_reply * samples_asked) as u64);
    assert!(s.info_hashes_known <= cfg.max_samples_per_reply * samples_asked);
    assert!(samples_asked >= 2, "revisits happened, so the bound above was tested");
    assert_eq!(s.nodes_known, 1);
    assert_eq!(s.lookups_running, 0, "every garbage info-hash was looked up and is done");
}

#[test]
fn interval_is_honoured_and_num_only_asks_for_revisits_while_they_bring_news() {
    let me = contact(1);
    let mut n = 0u32;
    let answer: Answer = Box::new(move |_, method| {
        if !matches!(method, Method::SampleInfohashes { .. }) {
            return Some(Response { id: me.id, ..Default::default() });
        }
        n += 1;
        // New samples on the first three visits, the same ones after.
        let k = n.min(3);
        let samples = (0..20u32)
            .map(|i| Id::from_slice(&[&[0x55; 12][..], &k.to_be_bytes(), &i.to_be_bytes()].concat()).unwrap())
            .collect();
        Some(Response { id: me.id, samples: Some(samples), num: Some(100), interval: Some(300), ..Default::default() })
    });
    let cfg = CrawlConfig { rounds: None, round_interval: Duration::from_secs(24 * 3600), ..CrawlConfig::default() };
    let mut h = Harness::new(cfg, answer);
    h.crawler.add_contacts(&[me]);
    h.run(Duration::from_secs(3 * 3600), Duration::from_secs(1));
    let times: Vec<Instant> = h.sent[&me.addr]
        .iter()
        .filter(|(_, m)| matches!(m, Method::SampleInfohashes { .. }))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(times.len(), 4, "visits 1-3 brought news, 4 did not: {times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(300)));
    assert!(times.windows(2).all(|w| w[1] - w[0] <= Duration::from_secs(302)));
    assert_eq!(h.crawler.stats().info_hashes_known, 60);
}

/// A DHT of `n` nodes that all answer, each naming 8 others and one sample of its own.
fn dht(n: u32, peers_per_swarm: usize) -> Answer {
    Box::new(move |to, method| {
        let i = u32::from_be_bytes(match to.ip() {
            std::net::IpAddr::V4(v4) => v4.octets(),
            std::net::IpAddr::V6(_) => return None,
        }) >> 8
            & 0xffff;
        let me = contact(i);
        let nodes = (1..=8).map(|k| contact((i * 7 + k * 13) % n + 1)).collect();
        let mut r = Response { id: me.id, nodes, token: Some(b"t".to_vec()), ..Default::default() };
        match method {
            Method::SampleInfohashes { .. } => {
                r.samples = Some(vec![Id::from_slice(&[&[0x66; 16][..], &i.to_be_bytes()].concat()).unwrap()]);
                r.num = Some(1);
                r.interval = Some(21600);
            }
            Method::GetPeers { .. } => {
                r.values = (0..peers_per_swarm as u32)
                    .map(|p| SocketAddr::from(((0x2000_0000 + p).to_be_bytes(), 1)))
                    .collect();
            }
            _ => {}
        }
        Some(r)
    })
}

#[test]
fn the_query_budget_and_the_in_flight_cap_hold() {
    // Nobody answers: queries pile up in flight against the cap, and the rate caps the rest.
    let cfg = CrawlConfig { rate: 20, burst: 40, max_in_flight: 10, ..CrawlConfig::default() };
    let mut h = Harness::new(cfg, Box::new(|_, _| None));
    h.crawler.add_contacts(&(1..=5000).map(contact).collect::<Vec<_>>());
    h.run(Duration::from_secs(1), Duration::from_millis(10));
    let sent: usize = h.sent.values().map(Vec::len).sum();
    assert_eq!(sent, 10, "in-flight cap");
    h.run(Duration::from_secs(60), Duration::from_millis(10));
    let sent: usize = h.sent.values().map(Vec::len).sum();
    println!("{sent} queries in 61 s at 20/s");
    assert!(sent as f64 <= 20.0 * 61.0 + 40.0, "{sent} queries");
    assert!(sent >= 100, "the crawl went on as queries timed out: {sent}");

    // Everybody answers: the rate alone bounds what is sent, lookups included.
    let cfg = CrawlConfig { rate: 50, burst: 50, rounds: None, ..CrawlConfig::default() };
    let mut h = Harness::new(cfg, dht(3000, 5));
    h.crawler.add_contacts(&[contact(1)]);
    h.run(Duration::from_secs(30), Duration::from_millis(10));
    let sent: usize = h.sent.values().map(Vec::len).sum();
    let s = h.crawler.stats();
    println!("{sent} queries in 30 s at 50/s; {s:?}");
    assert!(sent as f64 <= 50.0 * 30.0 + 50.0 + 16.0 * 8.0, "{sent}");
    assert!(sent as f64 >= 50.0 * 30.0 * 0.8, "{sent}: the budget was not used");
    assert!(s.lookups_done > 0 && s.nodes_visited > 0);
}

#[test]
fn every_cap_is_hit_and_holds() {
    let cfg = CrawlConfig {
        max_info_hashes: 50,
        max_fresh_nodes: 20,
        max_known_nodes: 30,
        max_peers_per_swarm: 3,
        rounds: None,
        ..CrawlConfig::default()
    };
    let mut h = Harness::new(cfg, dht(1000, 10));
    h.crawler.add_contacts(&(1..=100).map(contact).collect::<Vec<_>>());
    h.run(Duration::from_secs(120), Duration::from_millis(10));
    let s = h.crawler.stats();
    println!("{s:?}");
    assert_eq!(s.info_hashes_known, 50);
    assert!(s.info_hashes_dropped > 0);
    assert!(s.nodes_queued <= 20 && s.contacts_dropped > 0);
    assert!(s.nodes_known <= 30);
    assert!(s.peers_dropped > 0);
    assert!(h.reports.iter().all(|r| !matches!(r, Report::Swarm(s) if s.peers.len() > 3)));

    // Reports the driver does not take pause the lookups at the report cap.
    let cfg = CrawlConfig { max_reports: 5, rounds: None, ..CrawlConfig::default() };
    let mut h = Harness::new(cfg, dht(1000, 1));
    h.crawler.add_contacts(&[contact(1)]);
    let end = h.now + Duration::from_secs(60);
    while h.now < end {
        h.now += Duration::from_millis(10);
        if h.node.next_deadline() <= h.now {
            h.node.handle_timeout(h.now);
        }
        h.crawler.step(h.now, &mut h.node);
        while let Some(t) = h.node.poll_transmit() {
            let Ok(Message { tid, body: Body::Query(q), .. }) = Message::decode(&t.payload) else { continue };
            if let Some(r) = (h.answer)(t.to, &q.method) {
                let m = Message { tid, version: None, ip: None, read_only: false, body: Body::Response(r) };
                h.node.handle_packet(h.now, t.to, &m.encode());
            }
        }
        while let Some(ev) = h.node.poll_event() {
            h.crawler.handle_event(h.now, &ev);
        }
    }
    let s = h.crawler.stats();
    assert!(s.swarms_reported <= 5 + 16, "{} reports queued", s.swarms_reported);
    assert!(s.info_hashes_known > 100, "discovery goes on: {s:?}");
}

#[test]
fn info_hashes_from_incoming_queries_are_looked_up_and_rounds_repeat() {
    let cfg = CrawlConfig { rounds: Some(2), round_interval: Duration::from_secs(600), ..CrawlConfig::default() };
    let mut h = Harness::new(cfg, dht(50, 2));
    let ih = Id([0x99; 20]);
    h.crawler.handle_event(h.now, &Event::InfoHashSeen { info_hash: ih, from: addr(7), announced: true });
    h.crawler.add_contacts(&[contact(1)]);
    h.run(Duration::from_secs(1200), Duration::from_millis(100));
    assert!(h.crawler.is_finished());
    let rounds: Vec<u32> =
        h.reports.iter().filter_map(|r| if let Report::RoundDone(n) = r { Some(*n) } else { None }).collect();
    assert_eq!(rounds, vec![0, 1]);
    for round in 0..2 {
        let swarm = h
            .reports
            .iter()
            .find_map(|r| match r {
                Report::Swarm(s) if s.info_hash == ih && s.round == round => Some(s.clone()),
                _ => None,
            })
            .expect("the info-hash was looked up in each round");
        assert_eq!(swarm.peers.len(), 2);
    }
    assert_eq!(h.crawler.stats().info_hashes_from_queries, 1);
    // The second round started one interval after the first.
    let done: Vec<Instant> = h
        .reports
        .iter()
        .filter_map(|r| if let Report::Swarm(s) = r { (s.round == 1).then_some(s.at) } else { None })
        .collect();
    assert!(done.iter().all(|t| *t >= h.now - Duration::from_secs(1200) + Duration::from_secs(600)));
}

/// A node that lists itself among its closest contacts is taken for a liar on its first
/// answer: what it names is not followed (BEP 5 nodes answer from a table without themselves).
#[test]
fn a_node_naming_itself_is_a_liar_at_once() {
    use crate::crawl::discovery::Discovery;
    use crate::dht::node::QueryId;
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut d = Discovery::new(&CrawlConfig::default(), t0());
    let liar = contact(1);
    assert!(d.offer(liar, None));
    let (node, _target, referrer) = d.next_contact(t0(), &mut rng).expect("one contact queued");
    d.sent(QueryId(1), node, referrer);
    let r = Response { id: liar.id, nodes: vec![liar, contact(2), contact(3)], ..Response::default() };
    let learned = d.on_answer(t0(), QueryId(1), &r, &mut |_| true).expect("our query");
    assert_eq!(d.stats.liars, 1);
    assert_eq!(learned.new_nodes, 0, "a liar's contacts are not followed");
    assert_eq!(d.fresh_len(), 0);
}
