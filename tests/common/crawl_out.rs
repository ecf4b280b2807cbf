//! Reading what `kadswarm crawl` wrote, independently of the crate's stores: the JSONL lines
//! and the SQLite tables of the documented schema, both turned into one comparable shape.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// (info-hash hex, run, round) → peers "IP:PORT".
pub type Rounds = BTreeMap<(String, i64, i64), BTreeSet<String>>;

/// Every observation line of a JSONL store. Panics on a line that is not a JSON object with
/// the contract's fields: a torn or garbled line is a failure of the store.
pub fn jsonl_rounds(path: &Path) -> Rounds {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_jsonl(path, &text)
}

/// The lines of a JSONL store that is still being written: only whole lines (a reader may
/// catch the writer between the start of a line and its newline).
pub fn jsonl_rounds_so_far(path: &Path) -> Rounds {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    parse_jsonl(path, whole)
}

fn parse_jsonl(path: &Path, text: &str) -> Rounds {
    let mut out = Rounds::new();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {line}", path.display(), i + 1));
        let ih = v["info_hash"].as_str().unwrap_or_else(|| panic!("no info_hash: {line}")).to_string();
        assert_eq!(ih.len(), 40, "info_hash is 40 hex: {line}");
        let peers: BTreeSet<String> = v["peers"]
            .as_array()
            .unwrap_or_else(|| panic!("no peers list: {line}"))
            .iter()
            .map(|p| p.as_str().expect("peer is a string").to_string())
            .collect();
        let run = v["run"].as_i64().unwrap_or_else(|| panic!("no run: {line}"));
        let round = v["round"].as_i64().unwrap_or_else(|| panic!("no round: {line}"));
        out.insert((ih, run, round), peers);
    }
    out
}

/// The same from an SQLite store: observations joined with their peers.
pub fn sqlite_rounds(path: &Path) -> Rounds {
    let db = rusqlite::Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = Rounds::new();
    let mut obs = db
        .prepare(
            "SELECT o.id, lower(hex(s.info_hash)), o.run, o.round FROM observations o JOIN swarms s ON s.id = o.swarm",
        )
        .expect("observations query");
    let rows: Vec<(i64, String, i64, i64)> = obs
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("observations")
        .map(|r| r.expect("row"))
        .collect();
    let mut peers = db
        .prepare(
            "SELECT p.ip, p.port FROM observation_peers op JOIN peers p ON p.id = op.peer WHERE op.observation = ?1",
        )
        .expect("peers query");
    for (id, ih, run, round) in rows {
        let set: BTreeSet<String> = peers
            .query_map([id], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
            .expect("peers")
            .map(|r| {
                let (ip, port) = r.expect("peer row");
                addr_string(&ip, port)
            })
            .collect();
        out.insert((ih, run, round), set);
    }
    out
}

/// Runs are numbered per store; compare two stores' runs by order.
pub fn renumber_runs(rounds: &Rounds) -> Rounds {
    let runs: BTreeSet<i64> = rounds.keys().map(|k| k.1).collect();
    let index: BTreeMap<i64, i64> = runs.into_iter().enumerate().map(|(i, r)| (r, i as i64)).collect();
    rounds.iter().map(|((ih, run, round), p)| ((ih.clone(), index[run], *round), p.clone())).collect()
}

fn addr_string(ip: &[u8], port: i64) -> String {
    match ip.len() {
        4 => format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]),
        16 => {
            let octets: [u8; 16] = ip.try_into().expect("16 bytes");
            format!("[{}]:{port}", std::net::Ipv6Addr::from(octets))
        }
        n => panic!("stored IP of {n} bytes"),
    }
}

/// Every peer seen per info-hash, over all rounds.
pub fn peers_by_swarm(rounds: &Rounds) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for ((ih, _, _), peers) in rounds {
        out.entry(ih.clone()).or_default().extend(peers.iter().cloned());
    }
    out
}
