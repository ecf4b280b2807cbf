//! A bencode (BEP 3) writer straight into a byte buffer.
//!
//! KRPC answers are the hot path of a DHT node: a general encoder (bendy) spent about a
//! microsecond per ping answer in allocations and key-order bookkeeping. Callers here write
//! keys in sorted order themselves (debug builds check it), which makes the output canonical;
//! the tests hand every message to bendy's strict decoder to prove it.

/// Appends bencoded values to `out`.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// The last key written at each open dictionary level, to check the order in debug builds.
    #[cfg(debug_assertions)]
    keys: Vec<Option<Vec<u8>>>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer {
            out,
            #[cfg(debug_assertions)]
            keys: Vec::new(),
        }
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.len_prefix(b.len());
        self.out.extend_from_slice(b);
        self
    }

    /// A byte string made of `parts` concatenated, without building it first.
    pub fn bytes_from_parts(&mut self, len: usize, fill: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        self.len_prefix(len);
        let start = self.out.len();
        fill(self.out);
        debug_assert_eq!(self.out.len() - start, len, "declared string length");
        self
    }

    fn len_prefix(&mut self, len: usize) {
        self.decimal(len as u64, false);
        self.out.push(b':');
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        self.out.push(b'i');
        self.decimal(v.unsigned_abs(), v < 0);
        self.out.push(b'e');
        self
    }

    fn decimal(&mut self, mut v: u64, negative: bool) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        if negative {
            self.out.push(b'-');
        }
        self.out.extend_from_slice(&digits[i..]);
    }

    pub fn begin_dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        #[cfg(debug_assertions)]
        self.keys.push(None);
        self
    }

    /// Writes a dictionary key; keys of one dictionary must come in ascending byte order.
    pub fn key(&mut self, k: &[u8]) -> &mut Self {
        #[cfg(debug_assertions)]
        if let Some(last) = self.keys.last_mut() {
            debug_assert!(last.as_deref().is_none_or(|prev| prev < k), "bencode keys out of order at {k:?}");
            *last = Some(k.to_vec());
        }
        self.bytes(k)
    }

    pub fn begin_list(&mut self) -> &mut Self {
        self.out.push(b'l');
        #[cfg(debug_assertions)]
        self.keys.push(None);
        self
    }

    /// Closes the innermost open dictionary or list.
    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        #[cfg(debug_assertions)]
        self.keys.pop();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bencode::{decode, Value};

    #[test]
    fn writes_every_type() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin_dict();
        w.key(b"a").int(-42);
        w.key(b"b").begin_list().bytes(b"xyz").int(0).int(i64::MAX).int(i64::MIN).end();
        w.key(b"c").bytes_from_parts(4, |o| o.extend_from_slice(b"ab\0d"));
        w.key(b"d").begin_dict().end();
        w.end();
        assert_eq!(out, b"d1:ai-42e1:bl3:xyzi0ei9223372036854775807ei-9223372036854775808ee1:c4:ab\0d1:ddee");
        let v = decode(&out).unwrap();
        assert_eq!(v.get(b"a").and_then(Value::as_int), Some(-42));
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "out of order")]
    fn unsorted_keys_are_caught_in_debug_builds() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin_dict().key(b"b").int(1).key(b"a").int(2).end();
    }
}
