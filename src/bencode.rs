//! Bencode (BEP 3) for network input: a zero-copy, bounded, lenient decoder.
//!
//! Encoding is in `bencode_writer`. Decoding is hand-written rather than bendy's because
//! bendy rejects dictionaries whose keys are out of order, and other DHT implementations do
//! send those, so we accept any key order here (the first of duplicate
//! keys wins). Every length is checked against the bytes actually present and nesting is
//! capped, so hostile input costs at most O(input) memory and never panics.

use std::ops::Range;

/// How deep lists and dictionaries may nest; KRPC needs 3, torrents about 5.
pub const MAX_DEPTH: usize = 32;

/// A decoded value borrowing its byte strings from the input buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    /// Key/value pairs in the order they appeared.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    #[error("bencode ends early at byte {0}")]
    Eof(usize),
    #[error("unexpected byte 0x{byte:02x} at {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("bad integer at byte {0}")]
    BadInt(usize),
    #[error("string of {len} bytes at byte {at} runs past the end of the input")]
    StringTooLong { len: u64, at: usize },
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("dictionary key at byte {0} is not a string")]
    KeyNotString(usize),
}

impl<'a> Value<'a> {
    /// Looks `key` up in a dictionary (`None` for other types or a missing key).
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        match self {
            Value::Dict(pairs) => pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn is_dict(&self) -> bool {
        matches!(self, Value::Dict(_))
    }
}

/// Decodes the first value in `buf`. Bytes after it are ignored, as other DHT nodes do.
pub fn decode(buf: &[u8]) -> Result<Value<'_>, BencodeError> {
    decode_prefix(buf).map(|(v, _)| v)
}

/// Decodes the first value in `buf` and returns it with the number of bytes it took.
pub fn decode_prefix(buf: &[u8]) -> Result<(Value<'_>, usize), BencodeError> {
    let mut p = Parser { buf, pos: 0 };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// The byte range in `buf` of the value stored under `key` in the dictionary that starts
/// `buf`, taking the first of duplicate keys as [`Value::get`] does.
///
/// A BEP 3 info-hash is the SHA-1 of the info dictionary exactly as the file spells it. This
/// decoder accepts unsorted keys and integers such as `i03e`, so re-encoding a decoded value
/// can give different bytes and a different hash; callers hash this span instead.
pub fn dict_value_span(buf: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, BencodeError> {
    let mut p = Parser { buf, pos: 0 };
    match p.peek()? {
        b'd' => p.pos += 1,
        byte => return Err(BencodeError::Unexpected { byte, at: 0 }),
    }
    let mut found = None;
    while p.peek()? != b'e' {
        if !p.peek()?.is_ascii_digit() {
            return Err(BencodeError::KeyNotString(p.pos));
        }
        let k = p.bytes()?;
        let start = p.pos;
        p.value(1)?;
        if found.is_none() && k == key {
            found = Some(start..p.pos);
        }
    }
    Ok(found)
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.buf.get(self.pos).copied().ok_or(BencodeError::Eof(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.int_until(b'e')?;
                Ok(Value::Int(n))
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                if depth >= MAX_DEPTH {
                    return Err(BencodeError::TooDeep);
                }
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                if depth >= MAX_DEPTH {
                    return Err(BencodeError::TooDeep);
                }
                self.pos += 1;
                let mut pairs = Vec::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(BencodeError::KeyNotString(self.pos));
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
                self.pos += 1;
                Ok(Value::Dict(pairs))
            }
            byte => Err(BencodeError::Unexpected { byte, at: self.pos }),
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let at = self.pos;
        let len = self.int_until(b':')?;
        let len = u64::try_from(len).map_err(|_| BencodeError::BadInt(at))?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if len > remaining {
            return Err(BencodeError::StringTooLong { len, at });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// Reads a decimal integer up to `end`, consuming `end`.
    fn int_until(&mut self, end: u8) -> Result<i64, BencodeError> {
        let start = self.pos;
        let rest = &self.buf[start..];
        let len = rest.iter().position(|&b| b == end).ok_or(BencodeError::Eof(self.buf.len()))?;
        let digits = &rest[..len];
        let (neg, body) = match digits.split_first() {
            Some((b'-', body)) => (true, body),
            _ => (false, digits),
        };
        if body.is_empty() || body.len() > 19 || !body.iter().all(u8::is_ascii_digit) {
            return Err(BencodeError::BadInt(start));
        }
        // Negative numbers accumulate downwards so that i64::MIN, whose magnitude has no
        // positive i64, still parses.
        let sign = if neg { -1 } else { 1 };
        let mut n: i64 = 0;
        for &d in body {
            let digit = i64::from(d - b'0') * sign;
            n = n.checked_mul(10).and_then(|n| n.checked_add(digit)).ok_or(BencodeError::BadInt(start))?;
        }
        self.pos = start + len + 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_all_types() {
        let v = decode(b"d1:ai-42e1:bl3:xyzi0ee1:cd0:0:ee").unwrap();
        assert_eq!(v.get(b"a").and_then(Value::as_int), Some(-42));
        let l = v.get(b"b").and_then(Value::as_list).unwrap();
        assert_eq!(l[0].as_bytes(), Some(&b"xyz"[..]));
        assert_eq!(v.get(b"c"), Some(&Value::Dict(vec![(&b""[..], Value::Bytes(b""))])));
    }

    #[test]
    fn accepts_unsorted_keys_first_duplicate_wins() {
        let v = decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
        assert_eq!(v.get(b"a").and_then(Value::as_int), Some(2));
        assert_eq!(v.get(b"b").and_then(Value::as_int), Some(1));
    }

    #[test]
    fn rejects_hostile_input() {
        let cases: &[&[u8]] = &[
            b"",
            b"d",
            b"d1:a",
            b"i12",
            b"ie",
            b"i-e",
            b"i99999999999999999999e",
            b"4294967296:x",
            b"18446744073709551617:x",
            b"5:abc",
            b"di1ei2ee",
            b"x",
            b"l-1:e",
        ];
        for c in cases {
            assert!(decode(c).is_err(), "{:?}", String::from_utf8_lossy(c));
        }
    }

    #[test]
    fn nesting_is_capped() {
        let mut deep = vec![b'l'; 10_000];
        deep.extend(vec![b'e'; 10_000]);
        assert_eq!(decode(&deep), Err(BencodeError::TooDeep));
        let mut ok = vec![b'l'; MAX_DEPTH];
        ok.extend(vec![b'e'; MAX_DEPTH]);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn value_span_is_exact_and_first_duplicate_wins() {
        let buf = b"d1:bi03e4:infod1:zi1e1:ai2ee4:infoi9ee";
        let span = dict_value_span(buf, b"info").unwrap().unwrap();
        assert_eq!(&buf[span], b"d1:zi1e1:ai2ee");
        assert_eq!(&buf[dict_value_span(buf, b"b").unwrap().unwrap()], b"i03e");
        assert_eq!(dict_value_span(buf, b"missing"), Ok(None));
        assert!(dict_value_span(b"li1ee", b"info").is_err());
        assert!(dict_value_span(b"d4:infod1:ai1e", b"info").is_err());
        assert!(dict_value_span(b"di1ei2ee", b"info").is_err());
        assert!(dict_value_span(b"", b"info").is_err());
    }

    #[test]
    fn reports_consumed_length() {
        let (_, n) = decode_prefix(b"i5etrailing").unwrap();
        assert_eq!(n, 3);
    }
}
