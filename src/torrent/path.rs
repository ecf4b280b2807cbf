//! Safe relative paths from the file names a BEP 3 torrent declares (the info dictionary's
//! `name` and each file's `path` list).
//!
//! A torrent is written by a stranger and its names become files on our disk: a `..` or an
//! absolute component would write outside the download directory, and a Windows device name
//! such as `CON` or `aux.txt` opens a device instead of a file. Every component is checked
//! here, and a bad one rejects the torrent rather than being "repaired": a repaired name
//! differs from what every other client writes for the same torrent, and two repairs can
//! collide.
//!
//! Names must be UTF-8. Converting lossily was the alternative; it was turned down for the same
//! reason as repairs: the file would be named unlike everyone else's copy of it, so seeding an
//! existing download would silently find nothing.

use std::path::{Component, Path, PathBuf};

/// Longest component accepted, in bytes: the limit of ext4, NTFS (in UTF-16 units) and APFS.
pub const MAX_COMPONENT_LEN: usize = 255;

/// Why a name from a torrent cannot be used as a path component.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty path component")]
    Empty,
    #[error("a file path with no components")]
    NoComponents,
    #[error("path component {0:?} leads out of its directory")]
    Traversal(String),
    #[error("path component {0:?} contains a path separator")]
    Separator(String),
    #[error("path component {0:?} contains a NUL byte")]
    Nul(String),
    #[error("path component {0:?} is a device name on Windows")]
    WindowsReserved(String),
    #[error("path component of {len} bytes is longer than {MAX_COMPONENT_LEN}: {start:?}...")]
    TooLong { len: usize, start: String },
    #[error("path component {0:?} is not UTF-8")]
    NotUtf8(String),
    #[error("path component {0:?} is not a plain file name on this system")]
    NotPlain(String),
}

/// Checks one component and returns it as a string.
pub fn sanitize_component(raw: &[u8]) -> Result<String, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.len() > MAX_COMPONENT_LEN {
        // Only the start goes into the error: the rest may be megabytes of hostile input.
        let start = String::from_utf8_lossy(&raw[..32]).into_owned();
        return Err(PathError::TooLong { len: raw.len(), start });
    }
    let name = match std::str::from_utf8(raw) {
        Ok(name) => name,
        Err(_) => return Err(PathError::NotUtf8(String::from_utf8_lossy(raw).into_owned())),
    };
    if name.contains('\0') {
        return Err(PathError::Nul(name.to_owned()));
    }
    // Both separators everywhere: a torrent made on Linux may be downloaded on Windows, where
    // `\` splits a path too.
    if name.contains(['/', '\\']) {
        return Err(PathError::Separator(name.to_owned()));
    }
    if name == "." || name == ".." {
        return Err(PathError::Traversal(name.to_owned()));
    }
    if is_windows_device(name) {
        return Err(PathError::WindowsReserved(name.to_owned()));
    }
    // Defence in depth: whatever else this platform's path parser treats specially (a drive
    // prefix such as `C:` on Windows) must not get through as a component.
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(part)), None) if part == name => Ok(name.to_owned()),
        _ => Err(PathError::NotPlain(name.to_owned())),
    }
}

/// Checks every component of one file's path and joins them into a relative path.
pub fn sanitize_path<'a>(components: impl IntoIterator<Item = &'a [u8]>) -> Result<PathBuf, PathError> {
    let mut path = PathBuf::new();
    for raw in components {
        path.push(sanitize_component(raw)?);
    }
    if path.as_os_str().is_empty() {
        return Err(PathError::NoComponents);
    }
    Ok(path)
}

/// Windows opens a device for these names in any case, and also with any extension (`aux.txt`)
/// or with spaces before the extension, so the part before the first dot is compared.
fn is_windows_device(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        _ => match upper.strip_prefix("COM").or_else(|| upper.strip_prefix("LPT")) {
            // Windows also reserves the superscript digits: COM¹ is a serial port.
            Some(digit) => matches!(digit, "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "¹" | "²" | "³"),
            None => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        let long = "x".repeat(MAX_COMPONENT_LEN);
        for ok in
            ["a", "a.txt", "...", ".hidden", "Vol 1: Intro", "日本語.txt", "CONSOLE", "con_", "COM10", "LPT", &long]
        {
            assert_eq!(sanitize_component(ok.as_bytes()).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn rejects_every_attack_naming_the_component() {
        let cases: &[(&[u8], PathError)] = &[
            (b"", PathError::Empty),
            (b".", PathError::Traversal(".".into())),
            (b"..", PathError::Traversal("..".into())),
            (b"/etc/passwd", PathError::Separator("/etc/passwd".into())),
            (b"a/../../b", PathError::Separator("a/../../b".into())),
            (b"..\\windows", PathError::Separator("..\\windows".into())),
            (b"a\0b", PathError::Nul("a\0b".into())),
            (b"CON", PathError::WindowsReserved("CON".into())),
            (b"aux.txt", PathError::WindowsReserved("aux.txt".into())),
            (b"Nul.tar.gz", PathError::WindowsReserved("Nul.tar.gz".into())),
            (b"prn .txt", PathError::WindowsReserved("prn .txt".into())),
            (b"com1", PathError::WindowsReserved("com1".into())),
            (b"LPT9.log", PathError::WindowsReserved("LPT9.log".into())),
            ("COM\u{b9}".as_bytes(), PathError::WindowsReserved("COM\u{b9}".into())),
            (b"conin$", PathError::WindowsReserved("conin$".into())),
            (b"\xffname", PathError::NotUtf8("\u{fffd}name".into())),
        ];
        for (raw, want) in cases {
            let got = sanitize_component(raw);
            assert_eq!(got.as_ref(), Err(want), "{:?}", String::from_utf8_lossy(raw));
            let text = want.to_string();
            let shown = format!("{:?}", String::from_utf8_lossy(raw));
            assert!(raw.is_empty() || text.contains(&shown), "{text} should name {shown}");
        }
        let long = vec![b'y'; MAX_COMPONENT_LEN + 1];
        match sanitize_component(&long) {
            Err(PathError::TooLong { len, start }) => assert_eq!((len, start.len()), (256, 32)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn whole_paths() {
        assert_eq!(sanitize_path([&b"a"[..], b"b", b"c.txt"]), Ok(PathBuf::from("a/b/c.txt")));
        assert_eq!(sanitize_path(std::iter::empty()), Err(PathError::NoComponents));
        // An absolute path as a list starts with an empty component; a traversal needs a `..`.
        assert_eq!(sanitize_path([&b""[..], b"etc", b"passwd"]), Err(PathError::Empty));
        assert_eq!(sanitize_path([&b"a"[..], b"..", b"..", b"b"]), Err(PathError::Traversal("..".into())));
        assert_eq!(sanitize_path([&b"a"[..], b""]), Err(PathError::Empty));
        assert!(!sanitize_path([&b"x"[..]]).unwrap().is_absolute());
    }
}
