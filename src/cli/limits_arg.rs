//! The values of `--upload-limit`/`--download-limit` (bytes a second, with optional SI or IEC
//! suffixes: `500k`, `2M`, `1MiB`, `64KiB/s`) and `--seed-ratio`, parsed at the edge so a bad
//! one is refused by clap with exit 2 and a message naming it.

/// A byte rate the parser refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateArgError {
    #[error("`{0}` is not a byte rate (expected bytes a second such as 250000, 500k, 2M or 1MiB; 0 for no limit)")]
    Syntax(String),
    #[error("`{0}` is more bytes a second than fit in 64 bits")]
    TooBig(String),
}

/// Bytes a second: digits (a decimal fraction allowed before a suffix), then optionally `k`,
/// `M`, `G` (powers of 1000, any case, `B` allowed after them) or `KiB`, `MiB`, `GiB` (powers
/// of 1024), then optionally `/s`. 0 means unlimited.
pub fn parse_rate(text: &str) -> Result<u64, RateArgError> {
    let syntax = || RateArgError::Syntax(text.to_string());
    let body = text.trim();
    let body = body.strip_suffix("/s").unwrap_or(body);
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(split);
    let multiplier: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        _ => return Err(syntax()),
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(syntax());
    }
    if let Ok(whole) = number.parse::<u64>() {
        return whole.checked_mul(multiplier).ok_or_else(|| RateArgError::TooBig(text.to_string()));
    }
    // A fraction ("1.5M"): only with a suffix, whole bytes being the unit.
    let value: f64 = number.parse().map_err(|_| syntax())?;
    if multiplier == 1 || !value.is_finite() {
        return Err(syntax());
    }
    let bytes = (value * multiplier as f64).round();
    if bytes >= u64::MAX as f64 {
        return Err(RateArgError::TooBig(text.to_string()));
    }
    Ok(bytes as u64)
}

/// `--seed-ratio`: a finite number, at least 0 (0 stops as soon as seeding starts).
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err(format!("`{text}` is not a seed ratio (expected a number such as 1 or 2.5, at least 0)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_bytes_and_suffixes() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("250000"), Ok(250_000));
        assert_eq!(parse_rate("500k"), Ok(500_000));
        assert_eq!(parse_rate("500kB"), Ok(500_000));
        assert_eq!(parse_rate("2M"), Ok(2_000_000));
        assert_eq!(parse_rate("2m"), Ok(2_000_000));
        assert_eq!(parse_rate("1G"), Ok(1_000_000_000));
        assert_eq!(parse_rate("1MiB"), Ok(1 << 20));
        assert_eq!(parse_rate("64KiB/s"), Ok(64 << 10));
        assert_eq!(parse_rate("1.5M"), Ok(1_500_000));
        assert_eq!(parse_rate("0.5MiB"), Ok(1 << 19));
    }

    #[test]
    fn garbage_is_refused_with_the_value_named() {
        for bad in ["", "fast", "-1", "1.5", "M", "5 k", "1x", "1.2.3k", ".5M", "5.M", "1MiBs", "NaNk"] {
            let err = parse_rate(bad).expect_err(bad);
            assert!(err.to_string().contains(&format!("`{bad}`")), "{err}");
        }
        assert!(matches!(parse_rate("18446744073709551615k"), Err(RateArgError::TooBig(_))));
        assert!(matches!(parse_rate("99999999999999999999G"), Err(RateArgError::TooBig(_))));
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_ratio("1"), Ok(1.0));
        assert_eq!(parse_ratio("2.5"), Ok(2.5));
        assert_eq!(parse_ratio("0"), Ok(0.0));
        for bad in ["-1", "inf", "NaN", "x", ""] {
            assert!(parse_ratio(bad).is_err(), "{bad}");
        }
    }
}
