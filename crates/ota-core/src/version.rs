//! Version numbers and their ordering.
//!
//! One grammar covers the versions our users publish:
//!
//! ```text
//! version    = core [ "-" prerelease ] [ "+" build ]
//! core       = number *( "." number )          ; 1 | 1.2 | 1.10.0 | 1416913926
//! prerelease = ident *( "." ident )            ; rc.1 | beta | 20240101
//! build      = ident *( "." ident )            ; ignored when ordering
//! number     = "0" / %x31-39 *DIGIT             ; no leading zeros (as SemVer)
//! ident      = 1*( ALPHA / DIGIT / "-" )       ; a numeric ident has no leading zeros
//! ```
//!
//! Leading zeros are refused (`01.2`, `1.0-rc.01`): `01.2` and `1.2` would
//! have equal precedence, so "the newest" would depend on the tie-break.
//!
//! Ordering (precedence), as [`Version::cmp_precedence`] defines it:
//! 1. core components compare numerically, left to right; a missing trailing
//!    component counts as 0 (`1.10.0 > 1.9.9`, `1.2 == 1.2.0`). A plain integer
//!    (an Android incremental, a timestamp) is a one-component core, so it
//!    compares numerically too, with no size limit.
//! 2. a version with a pre-release sorts before the same core without one
//!    (`2.0.0-rc.1 < 2.0.0`); pre-release identifiers compare as in SemVer 2:
//!    numeric ones numerically, numeric before alphanumeric, alphanumeric
//!    ones in ASCII order, and a longer list wins when all shared ones are equal.
//! 3. build metadata is ignored.
//!
//! [`Ord`] refines precedence with the text itself as a last tie-break, so the
//! order is total and consistent with `Eq` (two spellings of one precedence,
//! such as `1.2` and `1.2.0`, are distinct catalogue entries and still sort
//! deterministically).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Longest accepted version string, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// A parsed version number. See the module documentation for the grammar.
#[derive(Clone, Debug)]
pub struct Version {
    text: String,
    /// Core components with leading zeros stripped ("" stands for zero).
    core: Vec<String>,
    prerelease: Vec<Ident>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ident {
    /// Digits only, leading zeros stripped.
    Numeric(String),
    Alpha(String),
}

/// Why a string is not a valid version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string is empty.
    #[error("version is empty")]
    Empty,
    /// The string exceeds [`MAX_VERSION_LEN`].
    #[error("version is longer than {MAX_VERSION_LEN} bytes")]
    TooLong,
    /// A core component is not a decimal number.
    #[error("version {0:?}: each dot-separated part before '-' or '+' must be a decimal number")]
    BadCore(String),
    /// A numeric component or pre-release identifier has a leading zero.
    #[error("version {0:?}: numbers must not have leading zeros (write 1.2, not 01.2)")]
    LeadingZero(String),
    /// A pre-release or build identifier is empty or has a forbidden character.
    #[error("version {0:?}: pre-release and build identifiers must be non-empty [0-9A-Za-z-]")]
    BadIdent(String),
}

impl Version {
    /// Parses `text`, keeping it verbatim for display and storage.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        if text.is_empty() {
            return Err(VersionError::Empty);
        }
        if text.len() > MAX_VERSION_LEN {
            return Err(VersionError::TooLong);
        }
        let (rest, build) = match text.split_once('+') {
            Some((r, b)) => (r, Some(b)),
            None => (text, None),
        };
        let (core_text, pre_text) = match rest.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (rest, None),
        };
        let mut core = Vec::new();
        for part in core_text.split('.') {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VersionError::BadCore(text.to_owned()));
            }
            if has_leading_zero(part) {
                return Err(VersionError::LeadingZero(text.to_owned()));
            }
            core.push(strip_zeros(part).to_owned());
        }
        let mut prerelease = Vec::new();
        if let Some(pre) = pre_text {
            for id in pre.split('.') {
                check_ident(id, text)?;
                let numeric = id.bytes().all(|b| b.is_ascii_digit());
                if numeric && has_leading_zero(id) {
                    return Err(VersionError::LeadingZero(text.to_owned()));
                }
                prerelease.push(if numeric {
                    Ident::Numeric(strip_zeros(id).to_owned())
                } else {
                    Ident::Alpha(id.to_owned())
                });
            }
        }
        if let Some(build) = build {
            for id in build.split('.') {
                check_ident(id, text)?;
            }
        }
        Ok(Version {
            text: text.to_owned(),
            core,
            prerelease,
        })
    }

    /// The version exactly as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the version has a pre-release part (`2.0.0-rc.1`).
    pub fn is_prerelease(&self) -> bool {
        !self.prerelease.is_empty()
    }

    /// Compares by precedence only: equal precedence does not mean equal text.
    pub fn cmp_precedence(&self, other: &Self) -> Ordering {
        let n = self.core.len().max(other.core.len());
        for i in 0..n {
            let a = self.core.get(i).map(String::as_str).unwrap_or("");
            let b = other.core.get(i).map(String::as_str).unwrap_or("");
            match cmp_digits(a, b) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        match (self.prerelease.is_empty(), other.prerelease.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            (false, false) => {}
        }
        for (a, b) in self.prerelease.iter().zip(&other.prerelease) {
            let o = match (a, b) {
                (Ident::Numeric(x), Ident::Numeric(y)) => cmp_digits(x, y),
                (Ident::Numeric(_), Ident::Alpha(_)) => Ordering::Less,
                (Ident::Alpha(_), Ident::Numeric(_)) => Ordering::Greater,
                (Ident::Alpha(x), Ident::Alpha(y)) => x.cmp(y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        self.prerelease.len().cmp(&other.prerelease.len())
    }
}

fn has_leading_zero(digits: &str) -> bool {
    digits.len() > 1 && digits.starts_with('0')
}

fn strip_zeros(digits: &str) -> &str {
    digits.trim_start_matches('0')
}

/// Compares two digit strings without leading zeros as unbounded integers.
fn cmp_digits(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn check_ident(id: &str, text: &str) -> Result<(), VersionError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(VersionError::BadIdent(text.to_owned()));
    }
    Ok(())
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for Version {}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.cmp_precedence(other)
            .then_with(|| self.text.cmp(&other.text))
    }
}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Version {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}

impl FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn documented_examples() {
        assert!(v("1.10.0") > v("1.9.9"));
        assert!(v("2.0.0-rc.1") < v("2.0.0"));
        assert!(v("2.0.0-rc.2") < v("2.0.0-rc.10"));
        assert!(v("2.0.0-alpha") < v("2.0.0-alpha.1"));
        assert!(v("2.0.0-1") < v("2.0.0-alpha"));
        assert_eq!(v("1.0.0+a").cmp_precedence(&v("1.0.0+b")), Ordering::Equal);
        assert_eq!(v("1.2").cmp_precedence(&v("1.2.0")), Ordering::Equal);
        assert!(v("1416913926") > v("1416912639"));
        assert!(v("99999999999999999999999") > v("9999999999999999999999"));
        assert!(v("10") > v("9"));
        assert!(v("1.10") > v("1.0.9"));
        assert!(v("0.0.0") < v("0.0.1"));
        assert!(v("1.0.0-0") < v("1.0.0-1"));
    }

    #[test]
    fn semver_spec_chain() {
        let chain = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "v1.0",
            "1..2",
            ".1",
            "1.",
            "1.0-",
            "1.0-rc..1",
            "1.0+",
            "1.a",
            "1.0 ",
            "../1",
            "1/2",
            "1.0-rc_1",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(Version::parse(&"1".repeat(200)), Err(VersionError::TooLong));
        for zero in ["01.2", "1.02", "00", "1.0.0-rc.01", "007"] {
            assert_eq!(
                Version::parse(zero),
                Err(VersionError::LeadingZero(zero.to_owned())),
                "{zero:?}"
            );
        }
        // Leading zeros in build metadata and alphanumeric identifiers are fine.
        assert!(Version::parse("1.0.0-0a+001").is_ok());
    }

    fn version_strategy() -> impl Strategy<Value = String> {
        let core = prop::collection::vec(0u64..20, 1..4)
            .prop_map(|c| c.iter().map(u64::to_string).collect::<Vec<_>>().join("."));
        let ident = prop_oneof!["0|[1-9][0-9]?", "[a-z]{1,3}"];
        let pre = prop::option::of(prop::collection::vec(ident, 1..3).prop_map(|v| v.join(".")));
        let build = prop::option::of("[a-z0-9]{1,3}");
        (core, pre, build).prop_map(|(c, p, b)| {
            let mut s = c;
            if let Some(p) = p {
                s.push('-');
                s.push_str(&p);
            }
            if let Some(b) = b {
                s.push('+');
                s.push_str(&b);
            }
            s
        })
    }

    proptest! {
        #[test]
        fn order_is_total_and_consistent(a in version_strategy(), b in version_strategy(), c in version_strategy()) {
            let (a, b, c) = (v(&a), v(&b), v(&c));
            prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
            prop_assert_eq!(a.cmp(&b) == Ordering::Equal, a == b);
            if a <= b && b <= c { prop_assert!(a <= c); }
        }

        #[test]
        fn numeric_core_matches_integer_order(x in prop::collection::vec(0u64..1_000_000, 3), y in prop::collection::vec(0u64..1_000_000, 3)) {
            let sx = format!("{}.{}.{}", x[0], x[1], x[2]);
            let sy = format!("{}.{}.{}", y[0], y[1], y[2]);
            prop_assert_eq!(v(&sx).cmp_precedence(&v(&sy)), x.cmp(&y));
        }

        #[test]
        fn plain_integers_compare_numerically(x: u64, y: u64) {
            prop_assert_eq!(v(&x.to_string()).cmp(&v(&y.to_string())), x.cmp(&y));
        }

        #[test]
        fn prerelease_sorts_before_release(core in "(0|[1-9][0-9]{0,2})(\\.(0|[1-9][0-9]{0,2})){0,2}", pre in "[a-z][a-z0-9]{0,3}|0|[1-9][0-9]{0,3}") {
            let rel = v(&core);
            let rc = v(&format!("{core}-{pre}"));
            prop_assert!(rc < rel);
        }

        #[test]
        fn build_metadata_is_ignored(base in version_strategy(), b1 in "[a-z0-9]{1,4}", b2 in "[a-z0-9]{1,4}") {
            let base = base.split('+').next().unwrap_or_default().to_owned();
            let x = v(&format!("{base}+{b1}"));
            let y = v(&format!("{base}+{b2}"));
            prop_assert_eq!(x.cmp_precedence(&y), Ordering::Equal);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Version::parse(&s);
        }
    }
}
