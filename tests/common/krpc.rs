//! Bencode and KRPC for the process tests, written independently of the crate under test so
//! that a bug in kadswarm's codec cannot hide itself: a tiny encoder/decoder and a UDP client
//! that sends one query and waits, bounded, for its answer.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use super::{random_id, Proc, WAIT};

#[derive(Debug, Clone, PartialEq)]
pub enum Ben {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Ben>),
    Dict(BTreeMap<Vec<u8>, Ben>),
}

impl Ben {
    pub fn bytes(b: &[u8]) -> Ben {
        Ben::Bytes(b.to_vec())
    }

    pub fn dict(pairs: Vec<(&str, Ben)>) -> Ben {
        Ben::Dict(pairs.into_iter().map(|(k, v)| (k.as_bytes().to_vec(), v)).collect())
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Ben::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Ben::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Ben::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.encode(out));
                out.push(b'e');
            }
            Ben::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    Ben::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value that fills `buf` exactly.
    pub fn decode(buf: &[u8]) -> Option<Ben> {
        match Ben::parse(buf, 0)? {
            (v, end) if end == buf.len() => Some(v),
            _ => None,
        }
    }

    pub fn parse(buf: &[u8], pos: usize) -> Option<(Ben, usize)> {
        match *buf.get(pos)? {
            b'i' => {
                let end = pos + buf[pos..].iter().position(|&c| c == b'e')?;
                let n = std::str::from_utf8(&buf[pos + 1..end]).ok()?.parse().ok()?;
                Some((Ben::Int(n), end + 1))
            }
            b'l' | b'd' => {
                let mut items = Vec::new();
                let mut at = pos + 1;
                while *buf.get(at)? != b'e' {
                    let (v, next) = Ben::parse(buf, at)?;
                    items.push(v);
                    at = next;
                }
                if buf[pos] == b'l' {
                    return Some((Ben::List(items), at + 1));
                }
                if items.len() % 2 != 0 {
                    return None;
                }
                let mut map = BTreeMap::new();
                let mut it = items.into_iter();
                while let (Some(Ben::Bytes(k)), Some(v)) = (it.next(), it.next()) {
                    map.insert(k, v);
                }
                Some((Ben::Dict(map), at + 1))
            }
            b'0'..=b'9' => {
                let colon = pos + buf[pos..].iter().position(|&c| c == b':')?;
                let len: usize = std::str::from_utf8(&buf[pos..colon]).ok()?.parse().ok()?;
                let data = buf.get(colon + 1..colon + 1 + len)?;
                Some((Ben::Bytes(data.to_vec()), colon + 1 + len))
            }
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Ben> {
        match self {
            Ben::Dict(m) => m.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Ben::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

/// A bare KRPC client on a UDP socket of its own.
pub struct Krpc {
    sock: UdpSocket,
    id: [u8; 20],
    next_tid: u16,
    /// Flag queries read-only (BEP 43): no routing table keeps us, so no lookup under test
    /// waits for this client to answer.
    read_only: bool,
}

/// A 26-byte compact node (BEP 5): its id and IPv4 address.
pub fn compact_v4(c: &[u8]) -> (Vec<u8>, SocketAddr) {
    let addr = SocketAddrV4::new(Ipv4Addr::new(c[20], c[21], c[22], c[23]), u16::from_be_bytes([c[24], c[25]]));
    (c[..20].to_vec(), SocketAddr::V4(addr))
}

/// A 38-byte compact IPv6 node (BEP 32): its id and address.
pub fn compact_v6(c: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut ip = [0u8; 16];
    ip.copy_from_slice(&c[20..36]);
    let addr = SocketAddrV6::new(Ipv6Addr::from(ip), u16::from_be_bytes([c[36], c[37]]), 0, 0);
    (c[..20].to_vec(), SocketAddr::V6(addr))
}

impl Krpc {
    pub fn bind(ip: Ipv4Addr) -> Krpc {
        Krpc::bind_ip(IpAddr::V4(ip))
    }

    /// A client on an address of either family (e.g. `::1`).
    pub fn bind_ip(ip: IpAddr) -> Krpc {
        let sock = UdpSocket::bind((ip, 0)).expect("bind KRPC socket");
        sock.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        Krpc { sock, id: random_id(), next_tid: 1, read_only: false }
    }

    /// A client whose queries say `ro: 1`.
    pub fn bind_read_only(ip: Ipv4Addr) -> Krpc {
        Krpc { read_only: true, ..Krpc::bind(ip) }
    }

    /// Sends one query and returns the `r` dictionary of the matching response, or None after
    /// `patience` (no answer, an error answer, or garbage).
    pub fn query(
        &mut self,
        to: SocketAddr,
        method: &str,
        mut args: Vec<(&str, Ben)>,
        patience: Duration,
    ) -> Option<Ben> {
        self.next_tid = self.next_tid.wrapping_add(1);
        let tid = self.next_tid.to_be_bytes();
        args.push(("id", Ben::bytes(&self.id)));
        let mut fields = vec![("a", Ben::dict(args)), ("q", Ben::bytes(method.as_bytes()))];
        if self.read_only {
            fields.push(("ro", Ben::Int(1)));
        }
        fields.extend([("t", Ben::bytes(&tid)), ("y", Ben::bytes(b"q"))]);
        let msg = Ben::dict(fields);
        let mut out = Vec::new();
        msg.encode(&mut out);
        self.sock.send_to(&out, to).expect("send KRPC query");
        let deadline = Instant::now() + patience;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else { continue };
            let Some(reply) = Ben::decode(&buf[..n]) else { continue };
            if from != to || reply.get("t").and_then(Ben::as_bytes) != Some(&tid[..]) {
                continue;
            }
            if reply.get("y").and_then(Ben::as_bytes) != Some(b"r") {
                return None;
            }
            return reply.get("r").cloned();
        }
        None
    }
}

/// Waits that the process tests share.
impl Krpc {
    /// The id a node answers ping with, polling until it answers (at most `WAIT`).
    pub fn wait_id(&mut self, to: SocketAddr, proc: &mut Proc) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let r = self.query(to, "ping", vec![], Duration::from_millis(500));
            if let Some(id) = r.as_ref().and_then(|r| r.get("id")).and_then(Ben::as_bytes) {
                assert_eq!(id.len(), 20, "{}: ping answered with a {}-byte id", proc.name, id.len());
                return id.to_vec();
            }
            proc.assert_running();
        }
        panic!("{to} never answered ping\n{}", proc.dump());
    }

    /// The (id, address) contacts of a find_node answer.
    pub fn find_node(&mut self, to: SocketAddr, target: &[u8]) -> Vec<(Vec<u8>, SocketAddr)> {
        let Some(r) = self.query(to, "find_node", vec![("target", Ben::bytes(target))], Duration::from_secs(1)) else {
            return Vec::new();
        };
        let nodes = r.get("nodes").and_then(Ben::as_bytes).unwrap_or_default();
        nodes.chunks_exact(26).map(compact_v4).collect()
    }

    /// The IPv4 (`nodes`) and IPv6 (`nodes6`) contacts of a find_node answer; `want` is
    /// sent as BEP 32's list when not empty. None when there was no answer.
    #[allow(clippy::type_complexity)]
    pub fn find_node_want(
        &mut self,
        to: SocketAddr,
        target: &[u8],
        want: &[&str],
    ) -> Option<(Vec<(Vec<u8>, SocketAddr)>, Vec<(Vec<u8>, SocketAddr)>)> {
        let mut args = vec![("target", Ben::bytes(target))];
        if !want.is_empty() {
            args.push(("want", Ben::List(want.iter().map(|w| Ben::bytes(w.as_bytes())).collect())));
        }
        let r = self.query(to, "find_node", args, Duration::from_secs(1))?;
        let nodes = r.get("nodes").and_then(Ben::as_bytes).unwrap_or_default();
        let nodes6 = r.get("nodes6").and_then(Ben::as_bytes).unwrap_or_default();
        Some((nodes.chunks_exact(26).map(compact_v4).collect(), nodes6.chunks_exact(38).map(compact_v6).collect()))
    }

    /// Asks `to` for `target` until its answer lists a node at `expect` (at most `WAIT`).
    pub fn wait_listed(&mut self, to: SocketAddr, target: &[u8], expect: SocketAddr, proc: &mut Proc) -> Vec<u8> {
        let deadline = Instant::now() + WAIT;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last = self.find_node(to, target);
            if let Some((id, _)) = last.iter().find(|(_, a)| *a == expect) {
                return id.clone();
            }
            proc.assert_running();
            thread::sleep(Duration::from_millis(300));
        }
        panic!("{to} never listed {expect} in find_node answers; last answer: {last:?}\n{}", proc.dump());
    }
}
