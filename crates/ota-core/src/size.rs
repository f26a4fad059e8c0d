//! Sizes as people write them: `1048576`, `500MB`, `1MiB`, `8GiB`.
//!
//! Decimal units are powers of ten (`kB`/`KB` = 10^3, `MB` = 10^6, `GB` = 10^9,
//! `TB` = 10^12) and binary units powers of two (`KiB` = 2^10, `MiB` = 2^20,
//! `GiB` = 2^30, `TiB` = 2^40), as IEC 80000-13 defines them. A bare `K`, `M`,
//! `G` or `T` is refused because people read it both ways.
//!
//! ```
//! use ota_core::size::parse_size;
//! assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
//! assert_eq!(parse_size("1MiB").unwrap(), 1_048_576);
//! assert!(parse_size("1M").is_err());
//! ```

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// No number, or not a whole number.
    #[error(
        "invalid size {0:?}: expected a whole number with an optional unit, e.g. 500MB or 8GiB"
    )]
    Syntax(String),
    /// A unit this parser does not know (or an ambiguous one).
    #[error("invalid size unit {unit:?} in {text:?}: use B, kB, MB, GB, TB (powers of 10) or KiB, MiB, GiB, TiB (powers of 2)")]
    Unit {
        /// The unit as written.
        unit: String,
        /// The whole text.
        text: String,
    },
    /// Larger than `u64`.
    #[error("size {0:?} is too large")]
    Overflow(String),
}

/// Parses a size in bytes. See the module documentation for the units.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(SizeError::Syntax(text.to_owned()));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| SizeError::Overflow(text.to_owned()))?;
    let mult: u64 = match unit.trim() {
        "" | "B" | "b" => 1,
        "kB" | "KB" | "kb" => 1_000,
        "MB" | "mb" => 1_000_000,
        "GB" | "gb" => 1_000_000_000,
        "TB" | "tb" => 1_000_000_000_000,
        "KiB" | "kiB" | "kib" => 1 << 10,
        "MiB" | "mib" => 1 << 20,
        "GiB" | "gib" => 1 << 30,
        "TiB" | "tib" => 1 << 40,
        u => {
            return Err(SizeError::Unit {
                unit: u.to_owned(),
                text: text.to_owned(),
            })
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| SizeError::Overflow(text.to_owned()))
}

/// Formats a byte count for messages: `1048576 bytes (1 MiB)`.
pub fn describe(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (size, name) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let tenth = (bytes % size) * 10 / size;
            return if tenth == 0 {
                format!("{bytes} bytes ({whole} {name})")
            } else {
                format!("{bytes} bytes ({whole}.{tenth} {name})")
            };
        }
    }
    format!("{bytes} bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_and_binary_units() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2kB").unwrap(), 2_000);
        assert_eq!(parse_size("3TB").unwrap(), 3_000_000_000_000);
        assert_eq!(parse_size("10B").unwrap(), 10);
    }

    #[test]
    fn refusals() {
        for bad in ["", "MB", "1.5GB", "-1", "5 parsecs", "1M", "2G", "1Mb/s"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_size("99999999999TiB"),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            parse_size("99999999999999999999999"),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn describes() {
        assert_eq!(describe(1 << 20), "1048576 bytes (1 MiB)");
        assert_eq!(describe(1_000_000), "1000000 bytes (976.5 KiB)");
        assert_eq!(describe(12), "12 bytes");
    }
}
