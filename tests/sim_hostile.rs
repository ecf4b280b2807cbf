//! Lookups against a liar in the simulated network (production node cores, virtual time):
//! one host that answers every query with 2,500 nodes at its own IP, all next to the
//! target, and 8,000 made-up peers. The lookups must still end on the true 8 closest nodes
//! (the liar's inventions displace nobody), and hold a bounded number of peers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kadswarm::dht::compact::CompactNode;
use kadswarm::dht::krpc::{Body, Message, Method, Response};
use kadswarm::dht::lookup::LookupConfig;
use kadswarm::id::Id;
use kadswarm::sim::{Impostor, Network, SimConfig};

const NODES: usize = 400;
const K: usize = 8;

fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

/// Answers every query as `id` with 2,500 nodes at `addr`'s IP (ids sharing all but the last
/// bytes with the target) and, for get_peers, 8,000 peers.
fn liar(id: Id, addr: SocketAddr) -> Impostor {
    Box::new(move |_from, bytes| {
        let msg = Message::decode(bytes).ok()?;
        let Body::Query(q) = msg.body else { return None };
        let (target, values) = match q.method {
            Method::FindNode { target } => (target, 0),
            Method::GetPeers { info_hash, .. } => (info_hash, 8000u32),
            _ => (id, 0),
        };
        let nodes = (0..2500u32)
            .map(|i| {
                let mut fake = target;
                fake.0[16..20].copy_from_slice(&(i + 1).to_be_bytes());
                CompactNode { id: fake, addr: SocketAddr::new(addr.ip(), 10_000 + i as u16) }
            })
            .collect();
        let values = (0..values).map(|i| SocketAddr::from(((0x2d00_0000u32 + i).to_be_bytes(), 6881))).collect();
        let r = Response { id, nodes, values, token: Some(b"tok".to_vec()), ..Default::default() };
        Some(Message { tid: msg.tid, version: None, ip: None, read_only: false, body: Body::Response(r) }.encode())
    })
}

#[test]
fn a_liar_with_thousands_of_same_ip_nodes_and_values_does_not_own_lookups() {
    let config = SimConfig { seed: 0xbad, ..SimConfig::default() };
    let mut net = Network::new(config, epoch());
    net.grow(NODES, Duration::from_millis(50), Duration::from_secs(300));
    let liar_index = NODES / 2;
    let liar_id = net.node(liar_index).id();
    net.replace_with_impostor(liar_index, liar(liar_id, net.addr(liar_index)));

    let mut exact = 0;
    let lookups = 20;
    for round in 0..lookups {
        let from = loop {
            let i = net.random_alive().expect("live nodes");
            if i != liar_index {
                break i;
            }
        };
        // Targets next to the liar (it is among the few closest), so that lookups meet it.
        let mut target = liar_id;
        target.0[1] ^= 0x80;
        target.0[19] ^= round as u8;
        let hits_before = net.impostor_hits(liar_index);
        let (summary, peers) = net.get_peers(from, target).expect("lookup finished within its time limit");
        let met_liar = net.impostor_hits(liar_index) > hits_before;
        // The real k closest, the liar among them if its own id puts it there: none of its
        // 2,500 inventions may displace a real node.
        let truth: Vec<Id> = net.true_closest(&target, K, from);
        let got: Vec<Id> = summary.closest.iter().map(|n| n.id).collect();
        let all_found = got == truth;
        println!(
            "lookup {round}: met the liar {met_liar}, {} queries, {} peers held, true closest found {all_found}",
            summary.stats.queries,
            peers.len()
        );
        assert!(summary.peers <= LookupConfig::default().max_peers, "{} peers held", summary.peers);
        assert!(peers.len() <= LookupConfig::default().max_peers);
        assert!(summary.stats.queries <= LookupConfig::default().max_queries);
        assert!(all_found, "lookup {round}: {got:?}, truly closest {truth:?} (liar {liar_id:?})");
        if met_liar {
            exact += 1;
        }
    }
    println!("{exact}/{lookups} lookups met the liar and still found the true {K} closest nodes");
    assert!(exact >= lookups * 9 / 10, "only {exact}/{lookups} lookups met the liar: the test would prove little");
}
