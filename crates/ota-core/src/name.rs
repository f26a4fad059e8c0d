//! Rules for package and branch names.
//!
//! Names end up in URLs, log lines and (for the agent) file names, so they are
//! restricted to a portable set: `[A-Za-z0-9._+-]`, 1 to 128 bytes, not
//! starting with `.` or `-`. That rules out path separators, `..`, spaces and
//! control characters everywhere at once.

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a package or branch name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {name:?}: use 1-{MAX_NAME_LEN} characters of [A-Za-z0-9._+-], not starting with '.' or '-'")]
pub struct BadName {
    /// Which kind of name ("package", "branch").
    pub what: &'static str,
    /// The refused text (truncated to 80 characters).
    pub name: String,
}

/// Checks a package or branch name; `what` names the field in the error.
pub fn check_name(what: &'static str, name: &str) -> Result<(), BadName> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BadName {
            what,
            name: name.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["app", "org.lineage.updater", "my_pkg-2", "c++", "main", "a"] {
            assert!(check_name("package", good).is_ok(), "{good}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "/abs", "-x", ".hidden", "a b", "é", "a\0",
        ] {
            assert!(check_name("package", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("branch", &"a".repeat(129)).is_err());
    }
}
