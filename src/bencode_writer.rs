//! A bencode (BEP 3) writer straight into a byte buffer.
//!
//! KRPC answers are the hot path of a DHT node: a general encoder (bendy) spent about a
//! microsecond per ping answer in allocations and key-order bookkeeping. Callers here write
//! keys in sorted order themselves, which makes the output canonical; debug builds and every
//! test build (release included) check the order with `KeyOrder`, and the tests hand every
//! message to bendy's strict decoder to prove it. Release builds outside tests skip the check:
//! it would copy every key on the hot path.

/// Appends bencoded values to `out`.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
    #[cfg(any(debug_assertions, test))]
    keys: KeyOrder,
}

/// Checks that the keys of every dictionary come in strictly ascending byte order. Compiled in
/// every profile so that its own tests run under `--release`; the writer uses it in debug and
/// test builds.
#[cfg_attr(not(any(debug_assertions, test)), allow(dead_code))]
#[derive(Debug, Default)]
struct KeyOrder {
    /// The last key written at each open level (`None` before the first key, and for lists).
    levels: Vec<Option<Vec<u8>>>,
}

#[cfg_attr(not(any(debug_assertions, test)), allow(dead_code))]
impl KeyOrder {
    fn open(&mut self) {
        self.levels.push(None);
    }

    fn close(&mut self) {
        self.levels.pop();
    }

    /// Panics when `k` does not sort strictly after the previous key of the innermost level.
    fn key(&mut self, k: &[u8]) {
        if let Some(last) = self.levels.last_mut() {
            assert!(last.as_deref().is_none_or(|prev| prev < k), "bencode keys out of order at {k:?}");
            *last = Some(k.to_vec());
        }
    }
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Writer<'a> {
        Writer {
            out,
            #[cfg(any(debug_assertions, test))]
            keys: KeyOrder::default(),
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
        #[cfg(any(debug_assertions, test))]
        let start = self.out.len();
        fill(self.out);
        #[cfg(any(debug_assertions, test))]
        assert_eq!(self.out.len() - start, len, "declared string length");
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
        #[cfg(any(debug_assertions, test))]
        self.keys.open();
        self
    }

    /// Writes a dictionary key; keys of one dictionary must come in ascending byte order.
    pub fn key(&mut self, k: &[u8]) -> &mut Self {
        #[cfg(any(debug_assertions, test))]
        self.keys.key(k);
        self.bytes(k)
    }

    pub fn begin_list(&mut self) -> &mut Self {
        self.out.push(b'l');
        #[cfg(any(debug_assertions, test))]
        self.keys.open();
        self
    }

    /// Closes the innermost open dictionary or list.
    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        #[cfg(any(debug_assertions, test))]
        self.keys.close();
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

    // The checks below run in every test build, `--release` included (CI tests in release).

    #[test]
    #[should_panic(expected = "out of order")]
    fn unsorted_keys_are_caught() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin_dict().key(b"b").int(1).key(b"a").int(2).end();
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn duplicate_keys_are_caught() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        w.begin_dict().key(b"a").int(1).key(b"a").int(2).end();
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn the_outer_order_resumes_after_a_nested_dictionary() {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        // "z" inside the inner dictionary does not count for the outer one, but "b" after "c" does.
        w.begin_dict().key(b"c").begin_dict().key(b"z").int(1).end().key(b"b").int(2).end();
    }

    #[test]
    fn key_order_is_per_dictionary_and_byte_wise() {
        let mut k = KeyOrder::default();
        k.open();
        k.key(b"a");
        k.key(b"ab");
        k.open(); // a list: no keys of its own
        k.open(); // a dictionary inside it starts afresh
        k.key(b"a");
        k.close();
        k.close();
        k.key(b"b");
        k.key(b"\xff");
        k.close();
        let caught = std::panic::catch_unwind(move || {
            let mut k = KeyOrder::default();
            k.open();
            k.key(b"b");
            k.key(b"B");
        });
        assert!(caught.is_err(), "upper case sorts before lower case");
    }

    #[test]
    #[should_panic(expected = "declared string length")]
    fn a_wrong_declared_length_is_caught() {
        let mut out = Vec::new();
        Writer::new(&mut out).bytes_from_parts(3, |o| o.extend_from_slice(b"ab"));
    }
}
