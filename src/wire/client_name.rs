//! Which program a peer runs, for people to read: the `v` key of its extension handshake
//! (BEP 10), made safe to print, or else its peer id read the Azureus way (BEP 20:
//! `-XXnnnn-`, a two-letter client code and four version characters).
//!
//! Both come from the peer, so both are untrusted text that ends up on a terminal and in JSON:
//! control characters (escape sequences), bidirectional overrides and zero-width characters
//! are removed, runs of white space become one space, and the result is capped at
//! [`MAX_CLIENT_CHARS`] characters. Letters beyond ASCII stay ("µTorrent").

/// Longest client name shown, in characters.
pub const MAX_CLIENT_CHARS: usize = 32;

/// The client name a peer gave in its extension handshake, fit to print; `None` when nothing
/// printable is left.
pub fn sanitise(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut count = 0;
    let mut space = false;
    for c in raw.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if c.is_control() || is_invisible(c) {
            continue;
        }
        let needed = if space { 2 } else { 1 };
        if count + needed > MAX_CLIENT_CHARS {
            break;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
        count += needed;
    }
    (!out.is_empty()).then_some(out)
}

/// Format characters that print as nothing yet change how the rest of a line looks: the
/// bidirectional embeddings and overrides (U+202A..U+202E, U+2066..U+2069) could make a name
/// spoof the columns after it, zero-width ones hide in a name, tag characters hide text.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00ad}'
        | '\u{061c}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{2028}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{e0000}'..='\u{e007f}')
}

/// Two-letter codes of Azureus-style peer ids (BEP 20 and the clients' own documentation);
/// an unknown code is shown as it is.
const CLIENTS: &[(&str, &str)] = &[
    ("AZ", "Vuze"),
    ("BC", "BitComet"),
    ("BI", "BiglyBT"),
    ("BT", "BitTorrent"),
    ("DE", "Deluge"),
    ("KS", "kadswarm"),
    ("KT", "KTorrent"),
    ("LT", "libtorrent"),
    ("lt", "rTorrent"),
    ("qB", "qBittorrent"),
    ("TR", "Transmission"),
    ("UM", "µTorrent Mac"),
    ("UT", "µTorrent"),
    ("UW", "µTorrent Web"),
    ("WW", "WebTorrent"),
    ("XL", "Xunlei"),
];

/// The client an Azureus-style peer id (`-XXnnnn-...`) names, with its version: the version
/// characters as dotted numbers, trailing zeros dropped (at least two kept), a final letter
/// (µTorrent's build type) ignored. `None` for any other shape of id.
pub fn from_peer_id(id: &[u8; 20]) -> Option<String> {
    if id[0] != b'-' || id[7] != b'-' || !id[1..7].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let code = std::str::from_utf8(&id[1..3]).ok()?;
    let name = CLIENTS.iter().find(|(c, _)| *c == code).map_or(code, |(_, n)| n);
    let mut digits: Vec<u8> = id[3..7].iter().map_while(|b| b.is_ascii_digit().then(|| b - b'0')).collect();
    while digits.len() > 2 && digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        return Some(name.to_string());
    }
    let version: Vec<String> = digits.iter().map(u8::to_string).collect();
    Some(format!("{name} {}", version.join(".")))
}

/// What to show for a peer: its own word (`v`) when it gave a printable one, else what its
/// peer id says, else nothing.
pub fn client_name(ext_v: Option<&str>, peer_id: &[u8; 20]) -> Option<String> {
    ext_v.and_then(sanitise).or_else(|| from_peer_id(peer_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &[u8]) -> [u8; 20] {
        let mut id = [b'7'; 20];
        id[..prefix.len()].copy_from_slice(prefix);
        id
    }

    #[test]
    fn azureus_style_ids_name_the_client_and_version() {
        assert_eq!(from_peer_id(&id(b"-qB4520-")).as_deref(), Some("qBittorrent 4.5.2"));
        assert_eq!(from_peer_id(&id(b"-UT355W-")).as_deref(), Some("µTorrent 3.5.5"));
        assert_eq!(from_peer_id(&id(b"-LT2090-")).as_deref(), Some("libtorrent 2.0.9"));
        assert_eq!(from_peer_id(&id(b"-TR3000-")).as_deref(), Some("Transmission 3.0"));
        assert_eq!(from_peer_id(&id(b"-KS0001-")).as_deref(), Some("kadswarm 0.0.0.1"));
        // An unknown code is shown as it is; letters where digits belong end the version.
        assert_eq!(from_peer_id(&id(b"-ZZ1234-")).as_deref(), Some("ZZ 1.2.3.4"));
        assert_eq!(from_peer_id(&id(b"-ZZabcd-")).as_deref(), Some("ZZ"));
    }

    #[test]
    fn other_ids_name_nothing() {
        assert_eq!(from_peer_id(&id(b"M7-4-3--")), None);
        assert_eq!(from_peer_id(&[0u8; 20]), None);
        // The shape, but not printable: an escape where the code is.
        assert_eq!(from_peer_id(&id(b"-\x1b[2J1-")), None);
        assert_eq!(from_peer_id(&id(b"-qB4520x")), None);
    }

    #[test]
    fn names_lose_escapes_controls_and_invisible_characters() {
        assert_eq!(sanitise("qBittorrent/4.5.2").as_deref(), Some("qBittorrent/4.5.2"));
        assert_eq!(sanitise("µTorrent 3.5.5").as_deref(), Some("µTorrent 3.5.5"));
        assert_eq!(sanitise("\x1b[31mred\x1b[0m").as_deref(), Some("[31mred[0m"));
        assert_eq!(sanitise("a\u{202e}gnp.exe").as_deref(), Some("agnp.exe"));
        assert_eq!(sanitise("zero\u{200b}width\u{feff}").as_deref(), Some("zerowidth"));
        assert_eq!(sanitise("  two\t\n  words  ").as_deref(), Some("two words"));
        assert_eq!(sanitise("\u{7}\u{0}\u{200d}  "), None);
        assert_eq!(sanitise(""), None);
    }

    #[test]
    fn names_are_capped_in_characters() {
        let long = "é".repeat(100);
        let got = sanitise(&long).unwrap();
        assert_eq!(got.chars().count(), MAX_CLIENT_CHARS);
        let words = "ab ".repeat(40);
        let got = sanitise(&words).unwrap();
        assert!(got.chars().count() <= MAX_CLIENT_CHARS, "{got:?}");
        assert!(!got.ends_with(' '));
    }

    #[test]
    fn the_handshake_name_wins_over_the_peer_id() {
        let qb = id(b"-qB4520-");
        assert_eq!(client_name(Some("Deluge 2.1.1"), &qb).as_deref(), Some("Deluge 2.1.1"));
        assert_eq!(client_name(None, &qb).as_deref(), Some("qBittorrent 4.5.2"));
        // Nothing printable in `v`: the peer id speaks.
        assert_eq!(client_name(Some("\u{1b}\u{7}"), &qb).as_deref(), Some("qBittorrent 4.5.2"));
        assert_eq!(client_name(None, &[0u8; 20]), None);
    }
}
