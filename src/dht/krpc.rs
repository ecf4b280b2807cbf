//! KRPC messages (BEP 5), parsed once at the edge into typed values.
//!
//! Covers ping, find_node, get_peers and announce_peer (BEP 5), sample_infohashes (BEP 51), the
//! `want` list and `nodes6` (BEP 32), the `ip` field (BEP 42) and the read-only flag `ro`
//! (BEP 43). Transaction ids are opaque byte strings of any length up to a bound, so 2-byte ids
//! of other clients work as well as ours. Dictionary keys may come in any order; we emit them
//! sorted, as bencode requires.

use std::net::SocketAddr;

use bendy::encoding::{Encoder, SingleItemEncoder, SortedDictEncoder};

use crate::bencode::{self, BencodeError, Value};
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
    /// True when the message may be a query (`y` is `q` or missing): only those get a 203.
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
        let answerable = matches!(root.get(b"y").and_then(Value::as_bytes), None | Some(b"q"));
        decode_fields(&root, tid.clone()).map_err(|error| DecodeFailure { tid, answerable, error })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::new();
        // Every value we emit is well-formed and keys are written in sorted order, so bendy
        // cannot fail here; an error would be a bug in this function, caught by the tests.
        let res = enc.emit_dict(|mut d| self.emit_top(&mut d));
        debug_assert!(res.is_ok(), "{res:?}");
        enc.get_output().unwrap_or_default()
    }

    fn emit_top(&self, d: &mut SortedDictEncoder) -> Result<(), bendy::encoding::Error> {
        if let Body::Query(q) = &self.body {
            d.emit_pair_with(b"a", |e| emit_args(q, e))?;
        }
        if let Body::Error(err) = &self.body {
            d.emit_pair_with(b"e", |e| {
                e.emit_list(|l| {
                    l.emit_int(err.code)?;
                    l.emit_bytes(err.message.as_bytes())
                })
            })?;
        }
        if let Some(ip) = &self.ip {
            d.emit_pair_with(b"ip", |e| e.emit_bytes(&compact::peer_bytes(ip)))?;
        }
        if let Body::Query(q) = &self.body {
            d.emit_pair_with(b"q", |e| e.emit_bytes(q.method.name()))?;
        }
        if let Body::Response(r) = &self.body {
            d.emit_pair_with(b"r", |e| emit_response(r, e))?;
        }
        if self.read_only {
            d.emit_pair(b"ro", 1)?;
        }
        d.emit_pair_with(b"t", |e| e.emit_bytes(&self.tid))?;
        if let Some(v) = &self.version {
            d.emit_pair_with(b"v", |e| e.emit_bytes(v))?;
        }
        let y: &[u8] = match self.body {
            Body::Query(_) => b"q",
            Body::Response(_) => b"r",
            Body::Error(_) => b"e",
        };
        d.emit_pair_with(b"y", |e| e.emit_bytes(y))
    }
}

fn emit_id(d: &mut SortedDictEncoder, key: &[u8], id: &Id) -> Result<(), bendy::encoding::Error> {
    d.emit_pair_with(key, |e| e.emit_bytes(id.as_bytes()))
}

fn emit_args(q: &Query, e: SingleItemEncoder) -> Result<(), bendy::encoding::Error> {
    e.emit_dict(|mut d| {
        emit_id(&mut d, b"id", &q.id)?;
        match &q.method {
            Method::Ping => {}
            Method::FindNode { target } | Method::SampleInfohashes { target } => {
                emit_id(&mut d, b"target", target)?;
            }
            Method::GetPeers { info_hash, noseed } => {
                emit_id(&mut d, b"info_hash", info_hash)?;
                if *noseed {
                    d.emit_pair(b"noseed", 1)?;
                }
            }
            Method::AnnouncePeer { info_hash, port, implied_port, token, seed } => {
                if *implied_port {
                    d.emit_pair(b"implied_port", 1)?;
                }
                emit_id(&mut d, b"info_hash", info_hash)?;
                d.emit_pair(b"port", *port)?;
                if *seed {
                    d.emit_pair(b"seed", 1)?;
                }
                d.emit_pair_with(b"token", |e| e.emit_bytes(token))?;
            }
            Method::Unknown { target, .. } => {
                if let Some(t) = target {
                    emit_id(&mut d, b"target", t)?;
                }
            }
        }
        if q.want.n4 || q.want.n6 {
            d.emit_pair_with(b"want", |e| {
                e.emit_list(|l| {
                    if q.want.n4 {
                        l.emit_bytes(b"n4")?;
                    }
                    if q.want.n6 {
                        l.emit_bytes(b"n6")?;
                    }
                    Ok(())
                })
            })?;
        }
        Ok(())
    })
}

fn emit_response(r: &Response, e: SingleItemEncoder) -> Result<(), bendy::encoding::Error> {
    e.emit_dict(|mut d| {
        emit_id(&mut d, b"id", &r.id)?;
        if let Some(i) = r.interval {
            d.emit_pair(b"interval", i)?;
        }
        if !r.nodes.is_empty() {
            let mut b = Vec::with_capacity(r.nodes.len() * compact::NODE_V4_LEN);
            compact::encode_nodes(&r.nodes, &mut b);
            d.emit_pair_with(b"nodes", |e| e.emit_bytes(&b))?;
        }
        if !r.nodes6.is_empty() {
            let mut b = Vec::with_capacity(r.nodes6.len() * compact::NODE_V6_LEN);
            compact::encode_nodes(&r.nodes6, &mut b);
            d.emit_pair_with(b"nodes6", |e| e.emit_bytes(&b))?;
        }
        if let Some(n) = r.num {
            d.emit_pair(b"num", n)?;
        }
        if let Some(samples) = &r.samples {
            let mut b = Vec::with_capacity(samples.len() * 20);
            for s in samples {
                b.extend_from_slice(s.as_bytes());
            }
            d.emit_pair_with(b"samples", |e| e.emit_bytes(&b))?;
        }
        if let Some(t) = &r.token {
            d.emit_pair_with(b"token", |e| e.emit_bytes(t))?;
        }
        if !r.values.is_empty() {
            d.emit_pair_with(b"values", |e| {
                e.emit_list(|l| {
                    for v in &r.values {
                        l.emit_bytes(&compact::peer_bytes(v))?;
                    }
                    Ok(())
                })
            })?;
        }
        Ok(())
    })
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
        b"get_peers" => Method::GetPeers { info_hash: id_field(args, "info_hash")?, noseed: flag(args, b"noseed") },
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
    })
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
#[path = "krpc_tests.rs"]
mod tests;
