//! Magnet URIs (BEP 9 "magnet URI format") and the other ways a user names a swarm: a bare
//! 40-hex or 32-base32 info-hash.

use std::net::SocketAddr;

use crate::id::{Id, InfoHash};

/// Longest magnet URI we look at; real ones are a few hundred bytes.
const MAX_URI_LEN: usize = 64 * 1024;
/// Peer hints (`x.pe`) kept from one magnet.
const MAX_PEER_HINTS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    pub display_name: Option<String>,
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    #[error("magnet URI longer than {MAX_URI_LEN} bytes")]
    TooLong,
    #[error("not a magnet URI or info-hash: `{0}`")]
    NotMagnet(String),
    #[error("magnet URI has no `xt=urn:btih:` info-hash")]
    NoInfoHash,
    #[error("bad info-hash in magnet URI: {0}")]
    BadInfoHash(String),
    #[error("bad percent-encoding in magnet URI")]
    BadEncoding,
}

impl Magnet {
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_URI_LEN {
            return Err(MagnetError::TooLong);
        }
        let query =
            uri.strip_prefix("magnet:?").ok_or_else(|| MagnetError::NotMagnet(uri.chars().take(80).collect()))?;
        let mut info_hash = None;
        let mut display_name = None;
        let mut peers = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            match key {
                "xt" => {
                    // Several xt may appear (v2 hashes, other networks); the first btih wins.
                    if let (None, Some(hash)) = (&info_hash, value.strip_prefix("urn:btih:")) {
                        let id = Id::parse_text(hash).map_err(|e| MagnetError::BadInfoHash(e.to_string()))?;
                        info_hash = Some(id);
                    }
                }
                "dn" => display_name = Some(value),
                "x.pe" if peers.len() < MAX_PEER_HINTS => {
                    if let Ok(addr) = value.parse::<SocketAddr>() {
                        peers.push(addr);
                    }
                }
                _ => {}
            }
        }
        Ok(Magnet { info_hash: info_hash.ok_or(MagnetError::NoInfoHash)?, display_name, peers })
    }

    /// A magnet URI for `info_hash` (used by `seed` and in messages).
    pub fn uri(info_hash: &InfoHash, display_name: Option<&str>) -> String {
        let mut s = format!("magnet:?xt=urn:btih:{}", info_hash.to_hex());
        if let Some(dn) = display_name {
            s.push_str("&dn=");
            s.push_str(&percent_encode(dn));
        }
        s
    }
}

/// Parses what a user may give as a swarm: a magnet URI or a bare info-hash.
pub fn parse_target(s: &str) -> Result<Magnet, MagnetError> {
    let s = s.trim();
    if s.starts_with("magnet:") {
        return Magnet::parse(s);
    }
    Id::parse_text(s)
        .map(|info_hash| Magnet { info_hash, display_name: None, peers: Vec::new() })
        .map_err(|_| MagnetError::NotMagnet(s.chars().take(80).collect()))
}

fn percent_decode(s: &str) -> Result<String, MagnetError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(MagnetError::BadEncoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| MagnetError::BadEncoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| MagnetError::BadEncoding)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_hex_base32_and_fields() {
        let m =
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=My%20File+x&x.pe=1.2.3.4:5&tr=http%3A%2F%2Fx&foo"))
                .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("My File x"));
        assert_eq!(m.peers, vec!["1.2.3.4:5".parse().unwrap()]);
        let b32 = Magnet::parse("magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(b32.info_hash.to_hex(), HEX);
    }

    #[test]
    fn targets_and_errors() {
        assert_eq!(parse_target(HEX).unwrap().info_hash.to_hex(), HEX);
        let uri = Magnet::uri(&parse_target(HEX).unwrap().info_hash, Some("a b/c"));
        assert_eq!(parse_target(&uri).unwrap().display_name.as_deref(), Some("a b/c"));
        for bad in ["", "nothex", "magnet:?dn=x", "magnet:?xt=urn:btih:zz", "magnet:?xt=urn:btih:%zz", "http://x"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert_eq!(Magnet::parse(&"magnet:?".repeat(20_000)), Err(MagnetError::TooLong));
    }
}
