//! KRPC messages (BEP 5), parsed once at the edge into typed values.
//!
//! Covers ping, find_node, get_peers and announce_peer (BEP 5), sample_infohashes (BEP 51),
//! scrapes (BEP 33: `scrape`, `BFsd`, `BFpe`), the `want` list and `nodes6` (BEP 32), the `ip`
//! field (BEP 42) and the read-only flag `ro` (BEP 43). Transaction ids are opaque byte strings of any length up to a bound, so 2-byte ids
//! of other clients work as well as ours. Dictionary keys may come in any order; we emit them
//! sorted, as bencode requires.

use std::net::SocketAddr;

use crate::bencode_writer::Writer;

use crate::bencode::{self, BencodeError, Value};
use crate::dht::bloom::{Bloom, BLOOM_BYTES};
use crate::dht::compact::{self, CompactNode};
use crate::id::{Id, InfoHash, NodeId};

/// Longest transaction id we accept; real clients use 2 to 8 bytes.
pub const MAX_TID_LEN: usize = 64;
/// Longest token we accept in announce_peer.
pub const MAX_TOKEN_LEN: usize = 64;

pub const ERR_GENERIC: i64 = 201;
pub const ERR_SERVER: i64 = 202;
pub const ERR_PROTOCOL: i64 = 203;
pub const ERR_METHOD_UNKNOWN: i64 = 204;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Opaque transaction id, echoed back in the answer.
    pub tid: Vec<u8>,
    /// The sender's client version (`v`), kept for statistics.
    pub version: Option<Vec<u8>>,
    /// BEP 42: the address the sender saw us at (responses).
    pub ip: Option<SocketAddr>,
    /// BEP 43: the sender is read-only and must not enter routing tables.
    pub read_only: bool,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Query(Query),
    Response(Response),
    Error(KrpcError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub id: NodeId,
    pub method: Method,
    pub want: Want,
}

/// BEP 32 `want`: which address families the querier wants nodes for (both false = default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    pub n4: bool,
    pub n6: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Ping,
    FindNode {
        target: Id,
    },
    GetPeers {
        info_hash: InfoHash,
        noseed: bool,
        /// BEP 33: also answer with the seed and peer bloom filters.
        scrape: bool,
    },
    AnnouncePeer {
        info_hash: InfoHash,
        port: u16,
        implied_port: bool,
        token: Vec<u8>,
        seed: bool,
    },
    SampleInfohashes {
        target: Id,
    },
    /// A method we do not know. If it carries `target` or `info_hash` we answer it like
    /// find_node so that newer extensions keep working through us (libtorrent does the same).
    Unknown {
        name: Vec<u8>,
        target: Option<Id>,
    },
}

impl Method {
    pub fn name(&self) -> &[u8] {
        match self {
            Method::Ping => b"ping",
            Method::FindNode { .. } => b"find_node",
            Method::GetPeers { .. } => b"get_peers",
            Method::AnnouncePeer { .. } => b"announce_peer",
            Method::SampleInfohashes { .. } => b"sample_infohashes",
            Method::Unknown { name, .. } => name,
        }
    }
}

/// A response. KRPC responses do not say which query they answer, so every optional field of
/// every method lives here; the transaction tells the caller what to expect.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub id: NodeId,
    pub nodes: Vec<CompactNode>,
    pub nodes6: Vec<CompactNode>,
    pub values: Vec<SocketAddr>,
    pub token: Option<Vec<u8>>,
    /// BEP 51.
    pub samples: Option<Vec<InfoHash>>,
    pub interval: Option<i64>,
    pub num: Option<i64>,
    /// BEP 33 scrape filters: seeds (`BFsd`) and other peers (`BFpe`). Boxed, so that the
    /// common answer without them stays small.
    pub bf_seeds: Option<Box<Bloom>>,
    pub bf_peers: Option<Box<Bloom>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrpcError {
    pub code: i64,
    pub message: String,
}

/// Why a datagram is not a KRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("bad bencode: {0}")]
    Bencode(#[from] BencodeError),
    #[error("message is not a dictionary")]
    NotADict,
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` has the wrong type")]
    WrongType(&'static str),
    #[error("field `{field}` has a bad length {len}")]
    BadLength { field: &'static str, len: usize },
    #[error("unknown message type `{0}`")]
    UnknownType(String),
    #[error("port {0} out of range")]
    BadPort(i64),
}

/// A failed decode, with the transaction id when it could be read so that the sender can be
/// told with error 203.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DecodeFailure {
    pub tid: Option<Vec<u8>>,
    /// True when the message says it is a query (`y` is `q`): only those get a 203. Anything
    /// less is dropped, so that garbage with a `t` cannot make us send an error to a victim.
    pub answerable: bool,
    pub error: DecodeError,
}

impl Message {
    pub fn decode(buf: &[u8]) -> Result<Message, DecodeFailure> {
        let root = bencode::decode(buf).map_err(|e| DecodeFailure { tid: None, answerable: false, error: e.into() })?;
        if !root.is_dict() {
            return Err(DecodeFailure { tid: None, answerable: false, error: DecodeError::NotADict });
        }
        let tid = root.get(b"t").and_then(Value::as_bytes).filter(|t| t.len() <= MAX_TID_LEN).map(<[u8]>::to_vec);
        // Only what may be a query is answered: an error to an error or a response could echo
        // between two confused nodes forever.
        let answerable = matches!(root.get(b"y").and_then(Value::as_bytes), Some(b"q"));
        decode_fields(&root, tid.clone()).map_err(|error| DecodeFailure { tid, answerable, error })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut out);
        out
    }

    /// Appends the bencoded message to `out` (keys in sorted order: canonical bencode).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.begin_dict();
        match &self.body {
            Body::Query(q) => {
                w.key(b"a");
                write_args(q, &mut w);
            }
            Body::Error(err) => {
                w.key(b"e").begin_list().int(err.code).bytes(err.message.as_bytes()).end();
            }
            Body::Response(_) => {}
        }
        if let Some(ip) = &self.ip {
            w.key(b"ip").bytes(&compact::peer_bytes(ip));
        }
        if let Body::Query(q) = &self.body {
            w.key(b"q").bytes(q.method.name());
        }
        if let Body::Response(r) = &self.body {
            w.key(b"r");
            write_response(r, &mut w);
        }
        if self.read_only {
            w.key(b"ro").int(1);
        }
        w.key(b"t").bytes(&self.tid);
        if let Some(v) = &self.version {
            w.key(b"v").bytes(v);
        }
        let y: &[u8] = match self.body {
            Body::Query(_) => b"q",
            Body::Response(_) => b"r",
            Body::Error(_) => b"e",
        };
        w.key(b"y").bytes(y);
        w.end();
    }

    /// Roughly the encoded size, so that encoding allocates once.
    fn encoded_len_hint(&self) -> usize {
        let body = match &self.body {
            Body::Response(r) => {
                r.nodes.len() * 30
                    + r.nodes6.len() * 42
                    + r.values.len() * 21
                    + r.samples.as_ref().map_or(0, |s| s.len() * 20)
                    + (usize::from(r.bf_seeds.is_some()) + usize::from(r.bf_peers.is_some())) * (BLOOM_BYTES + 10)
            }
            Body::Query(_) | Body::Error(_) => 0,
        };
        128 + body
    }
}

fn write_args(q: &Query, w: &mut Writer) {
    w.begin_dict();
    w.key(b"id").bytes(q.id.as_bytes());
    match &q.method {
        Method::Ping => {}
        Method::FindNode { target } | Method::SampleInfohashes { target } => {
            w.key(b"target").bytes(target.as_bytes());
        }
        Method::GetPeers { info_hash, noseed, scrape } => {
            w.key(b"info_hash").bytes(info_hash.as_bytes());
            if *noseed {
                w.key(b"noseed").int(1);
            }
            if *scrape {
                w.key(b"scrape").int(1);
            }
        }
        Method::AnnouncePeer { info_hash, port, implied_port, token, seed } => {
            if *implied_port {
                w.key(b"implied_port").int(1);
            }
            w.key(b"info_hash").bytes(info_hash.as_bytes());
            w.key(b"port").int(i64::from(*port));
            if *seed {
                w.key(b"seed").int(1);
            }
            w.key(b"token").bytes(token);
        }
        Method::Unknown { target, .. } => {
            if let Some(t) = target {
                w.key(b"target").bytes(t.as_bytes());
            }
        }
    }
    if q.want.n4 || q.want.n6 {
        w.key(b"want").begin_list();
        if q.want.n4 {
            w.bytes(b"n4");
        }
        if q.want.n6 {
            w.bytes(b"n6");
        }
        w.end();
    }
    w.end();
}

fn write_response(r: &Response, w: &mut Writer) {
    w.begin_dict();
    // Upper-case keys sort before lower-case ones.
    if let Some(b) = &r.bf_peers {
        w.key(b"BFpe").bytes(&b.0);
    }
    if let Some(b) = &r.bf_seeds {
        w.key(b"BFsd").bytes(&b.0);
    }
    w.key(b"id").bytes(r.id.as_bytes());
    if let Some(i) = r.interval {
        w.key(b"interval").int(i);
    }
    if !r.nodes.is_empty() {
        w.key(b"nodes").bytes_from_parts(compact::encoded_nodes_len(&r.nodes), |o| compact::encode_nodes(&r.nodes, o));
    }
    if !r.nodes6.is_empty() {
        w.key(b"nodes6")
            .bytes_from_parts(compact::encoded_nodes_len(&r.nodes6), |o| compact::encode_nodes(&r.nodes6, o));
    }
    if let Some(n) = r.num {
        w.key(b"num").int(n);
    }
    if let Some(samples) = &r.samples {
        w.key(b"samples").bytes_from_parts(samples.len() * 20, |o| {
            for s in samples {
                o.extend_from_slice(s.as_bytes());
            }
        });
    }
    if let Some(t) = &r.token {
        w.key(b"token").bytes(t);
    }
    if !r.values.is_empty() {
        w.key(b"values").begin_list();
        for v in &r.values {
            let len = if v.is_ipv4() { compact::PEER_V4_LEN } else { compact::PEER_V6_LEN };
            w.bytes_from_parts(len, |o| compact::encode_peer(v, o));
        }
        w.end();
    }
    w.end();
}

fn decode_fields(root: &Value, tid: Option<Vec<u8>>) -> Result<Message, DecodeError> {
    let tid = tid.ok_or(DecodeError::Missing("t"))?;
    let y = bytes_field(root, "y")?;
    let version = root.get(b"v").and_then(Value::as_bytes).map(|v| v[..v.len().min(16)].to_vec());
    let ip = root.get(b"ip").and_then(Value::as_bytes).and_then(compact::decode_peer);
    let read_only = root.get(b"ro").and_then(Value::as_int) == Some(1);
    let body = match y {
        b"q" => Body::Query(decode_query(root)?),
        b"r" => Body::Response(decode_response(root.get(b"r").ok_or(DecodeError::Missing("r"))?)?),
        b"e" => Body::Error(decode_error(root.get(b"e").ok_or(DecodeError::Missing("e"))?)?),
        other => return Err(DecodeError::UnknownType(String::from_utf8_lossy(other).into_owned())),
    };
    Ok(Message { tid, version, ip, read_only, body })
}

fn bytes_field<'a>(dict: &Value<'a>, key: &'static str) -> Result<&'a [u8], DecodeError> {
    dict.get(key.as_bytes()).ok_or(DecodeError::Missing(key))?.as_bytes().ok_or(DecodeError::WrongType(key))
}

fn id_field(dict: &Value, key: &'static str) -> Result<Id, DecodeError> {
    let b = bytes_field(dict, key)?;
    Id::from_slice(b).map_err(|_| DecodeError::BadLength { field: key, len: b.len() })
}

fn optional_id(dict: &Value, key: &'static str) -> Result<Option<Id>, DecodeError> {
    match dict.get(key.as_bytes()) {
        None => Ok(None),
        Some(_) => id_field(dict, key).map(Some),
    }
}

fn flag(dict: &Value, key: &[u8]) -> bool {
    dict.get(key).and_then(Value::as_int).is_some_and(|v| v != 0)
}

fn decode_query(root: &Value) -> Result<Query, DecodeError> {
    let name = bytes_field(root, "q")?;
    let args = root.get(b"a").ok_or(DecodeError::Missing("a"))?;
    if !args.is_dict() {
        return Err(DecodeError::WrongType("a"));
    }
    let id = id_field(args, "id")?;
    let method = match name {
        b"ping" => Method::Ping,
        b"find_node" => Method::FindNode { target: id_field(args, "target")? },
        b"get_peers" => Method::GetPeers {
            info_hash: id_field(args, "info_hash")?,
            noseed: flag(args, b"noseed"),
            scrape: flag(args, b"scrape"),
        },
        b"announce_peer" => {
            let port_raw = args.get(b"port").and_then(Value::as_int);
            let implied_port = flag(args, b"implied_port");
            let port = match port_raw {
                Some(p) => u16::try_from(p).map_err(|_| DecodeError::BadPort(p))?,
                // The port may be left out only when the sender asks us to use its source port.
                None if implied_port => 0,
                None => return Err(DecodeError::Missing("port")),
            };
            let token = bytes_field(args, "token")?;
            if token.len() > MAX_TOKEN_LEN {
                return Err(DecodeError::BadLength { field: "token", len: token.len() });
            }
            Method::AnnouncePeer {
                info_hash: id_field(args, "info_hash")?,
                port,
                implied_port,
                token: token.to_vec(),
                seed: flag(args, b"seed"),
            }
        }
        b"sample_infohashes" => Method::SampleInfohashes { target: id_field(args, "target")? },
        other => {
            let target = match optional_id(args, "target")? {
                Some(t) => Some(t),
                None => optional_id(args, "info_hash")?,
            };
            Method::Unknown { name: other[..other.len().min(64)].to_vec(), target }
        }
    };
    let mut want = Want::default();
    if let Some(list) = args.get(b"want").and_then(Value::as_list) {
        for w in list {
            match w.as_bytes() {
                Some(b"n4") => want.n4 = true,
                Some(b"n6") => want.n6 = true,
                _ => {}
            }
        }
    }
    Ok(Query { id, method, want })
}

fn decode_response(r: &Value) -> Result<Response, DecodeError> {
    if !r.is_dict() {
        return Err(DecodeError::WrongType("r"));
    }
    let id = id_field(r, "id")?;
    let nodes = match r.get(b"nodes") {
        None => Vec::new(),
        Some(v) => {
            let b = v.as_bytes().ok_or(DecodeError::WrongType("nodes"))?;
            compact::decode_nodes(b, false).map_err(|e| DecodeError::BadLength { field: "nodes", len: e.len })?
        }
    };
    let nodes6 = match r.get(b"nodes6") {
        None => Vec::new(),
        Some(v) => {
            let b = v.as_bytes().ok_or(DecodeError::WrongType("nodes6"))?;
            compact::decode_nodes(b, true).map_err(|e| DecodeError::BadLength { field: "nodes6", len: e.len })?
        }
    };
    let values = match r.get(b"values") {
        None => Vec::new(),
        Some(v) => {
            let list = v.as_list().ok_or(DecodeError::WrongType("values"))?;
            // Entries of an unknown size are skipped rather than failing the whole answer.
            list.iter().filter_map(|e| e.as_bytes().and_then(compact::decode_peer)).collect()
        }
    };
    let token = match r.get(b"token") {
        None => None,
        Some(v) => {
            let t = v.as_bytes().ok_or(DecodeError::WrongType("token"))?;
            if t.len() > MAX_TOKEN_LEN {
                return Err(DecodeError::BadLength { field: "token", len: t.len() });
            }
            Some(t.to_vec())
        }
    };
    let samples = match r.get(b"samples") {
        None => None,
        Some(v) => {
            let b = v.as_bytes().ok_or(DecodeError::WrongType("samples"))?;
            if b.len() % 20 != 0 {
                return Err(DecodeError::BadLength { field: "samples", len: b.len() });
            }
            Some(b.chunks_exact(20).filter_map(|c| Id::from_slice(c).ok()).collect())
        }
    };
    Ok(Response {
        id,
        nodes,
        nodes6,
        values,
        token,
        samples,
        interval: r.get(b"interval").and_then(Value::as_int),
        num: r.get(b"num").and_then(Value::as_int),
        bf_seeds: bloom_field(r, b"BFsd"),
        bf_peers: bloom_field(r, b"BFpe"),
    })
}

/// A BEP 33 filter; one of another size or type is ignored rather than failing the answer,
/// whose nodes and values are still of use.
fn bloom_field(r: &Value, key: &[u8]) -> Option<Box<Bloom>> {
    let b = r.get(key)?.as_bytes()?;
    (b.len() == BLOOM_BYTES).then(|| Box::new(Bloom::from_slice(b).unwrap_or_default()))
}

fn decode_error(e: &Value) -> Result<KrpcError, DecodeError> {
    let list = e.as_list().ok_or(DecodeError::WrongType("e"))?;
    let code = list.first().and_then(Value::as_int).ok_or(DecodeError::WrongType("e"))?;
    let message = list
        .get(1)
        .and_then(Value::as_bytes)
        // Truncated by characters, after the lossy conversion, so that re-encoding what we
        // decoded gives back the same message.
        .map(|m| String::from_utf8_lossy(&m[..m.len().min(1024)]).chars().take(200).collect())
        .unwrap_or_default();
    Ok(KrpcError { code, message })
}

#[cfg(test)]
mod tests;
