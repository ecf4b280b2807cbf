//! The BT-SEARCH datagram of BEP 14 (local service discovery): an HTTP-like request line,
//! `Host`, `Port`, one or more `Infohash` headers and an optional `cookie`, multicast to
//! 239.192.152.143:6771 (IPv4) or [ff15::efc0:988f]:6771 (IPv6).
//!
//! What arrives is untrusted and comes from anyone on the link, so parsing is strict about
//! size and bounds and liberal about form, as other clients write it: header names in any
//! case, lines ending in CRLF or a bare LF, unknown headers skipped, a missing `Host` or final
//! blank line forgiven. libtorrent sends one info-hash per datagram; we send several when we
//! have several torrents, and keep at most [`MAX_INFOHASHES`] of what others send.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::id::InfoHash;

/// The UDP port of the LSD multicast groups.
pub const LSD_PORT: u16 = 6771;
/// The IPv4 group: organization-local scope (RFC 2365).
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
/// The IPv6 group: site-local scope.
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f);
/// Datagrams longer than this are dropped unread: a real announce of [`MAX_INFOHASHES`]
/// hashes is about 900 bytes, and 1400 stays below any link's MTU.
pub const MAX_MESSAGE: usize = 1400;
/// Info-hashes kept from one message, and put in one message we send.
pub const MAX_INFOHASHES: usize = 16;
/// Longest cookie kept; a longer one cannot be ours and is dropped.
const MAX_COOKIE: usize = 64;

/// Which group a message is addressed to; it names the `Host` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One BT-SEARCH announce: "peers for these torrents listen on `port` at my address".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announce {
    pub port: u16,
    /// At most [`MAX_INFOHASHES`], in the order they came.
    pub info_hashes: Vec<InfoHash>,
    /// The sender's opaque token, which lets it recognise its own datagrams looped back.
    pub cookie: Option<String>,
}

/// Why a datagram is not a BT-SEARCH announce we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("{0} bytes is longer than the {MAX_MESSAGE} an announce may be")]
    TooLong(usize),
    #[error("the request line is not `BT-SEARCH * HTTP/1.1`")]
    NotBtSearch,
    #[error("header line without a colon: {0:?}")]
    BadHeaderLine(String),
    #[error("no Port header")]
    MissingPort,
    #[error("more than one Port header")]
    DuplicatePort,
    #[error("Port {0:?} is not a number from 1 to 65535")]
    BadPort(String),
    #[error("no valid Infohash header ({0} invalid)")]
    NoInfoHash(usize),
}

impl Announce {
    /// The datagram for `family`'s group. Hashes past [`MAX_INFOHASHES`] are left out: the
    /// caller splits longer lists over several messages.
    pub fn encode(&self, family: Family) -> Vec<u8> {
        let host = match family {
            Family::V4 => format!("{GROUP_V4}:{LSD_PORT}"),
            Family::V6 => format!("[{GROUP_V6}]:{LSD_PORT}"),
        };
        let mut text = String::with_capacity(128 + 51 * self.info_hashes.len().min(MAX_INFOHASHES));
        // Writing to a String cannot fail.
        let _ = write!(text, "BT-SEARCH * HTTP/1.1\r\nHost: {host}\r\nPort: {}\r\n", self.port);
        for ih in self.info_hashes.iter().take(MAX_INFOHASHES) {
            let _ = write!(text, "Infohash: {}\r\n", ih.to_hex());
        }
        if let Some(cookie) = &self.cookie {
            let _ = write!(text, "cookie: {cookie}\r\n");
        }
        // libtorrent ends its announces with two empty lines; a reader stops at the first.
        text.push_str("\r\n\r\n");
        text.into_bytes()
    }

    /// Parses one datagram. Invalid `Infohash` values are skipped (libtorrent does the same),
    /// but a message must carry at least one valid one and exactly one valid `Port`.
    pub fn parse(datagram: &[u8]) -> Result<Announce, MessageError> {
        if datagram.len() > MAX_MESSAGE {
            return Err(MessageError::TooLong(datagram.len()));
        }
        let mut lines = datagram.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let request = lines.next().unwrap_or_default();
        if !is_bt_search(request) {
            return Err(MessageError::NotBtSearch);
        }
        let mut port = None;
        let mut info_hashes = Vec::new();
        let mut invalid_hashes = 0;
        let mut cookie = None;
        for line in lines {
            if line.is_empty() {
                break;
            }
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                return Err(MessageError::BadHeaderLine(shown(line)));
            };
            let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
            if name.eq_ignore_ascii_case(b"port") {
                if port.is_some() {
                    return Err(MessageError::DuplicatePort);
                }
                port = Some(parse_port(value).ok_or_else(|| MessageError::BadPort(shown(value)))?);
            } else if name.eq_ignore_ascii_case(b"infohash") {
                match parse_info_hash(value) {
                    Some(ih) if info_hashes.len() < MAX_INFOHASHES => info_hashes.push(ih),
                    Some(_) => {}
                    None => invalid_hashes += 1,
                }
            } else if name.eq_ignore_ascii_case(b"cookie") {
                cookie = std::str::from_utf8(value).ok().filter(|c| c.len() <= MAX_COOKIE).map(str::to_owned);
            }
        }
        let port = port.ok_or(MessageError::MissingPort)?;
        if info_hashes.is_empty() {
            return Err(MessageError::NoInfoHash(invalid_hashes));
        }
        Ok(Announce { port, info_hashes, cookie })
    }
}

/// `BT-SEARCH <target> HTTP/1.x`, method in any case (libtorrent lowercases it before
/// comparing), target and version not checked further.
fn is_bt_search(line: &[u8]) -> bool {
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    words.next().is_some_and(|m| m.eq_ignore_ascii_case(b"BT-SEARCH"))
        && words.next().is_some()
        && words.next().is_some_and(|v| v.len() >= 5 && v[..5].eq_ignore_ascii_case(b"HTTP/"))
}

fn parse_port(value: &[u8]) -> Option<u16> {
    if value.is_empty() || value.len() > 5 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = value.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// Exactly 40 hex digits; an all-zero hash names no torrent.
fn parse_info_hash(value: &[u8]) -> Option<InfoHash> {
    if value.len() != 40 {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    InfoHash::parse_text(text).ok().filter(|ih| *ih != InfoHash::ZERO)
}

/// A short, printable excerpt of an offending value for an error message.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned()
}

#[cfg(test)]
mod tests;
