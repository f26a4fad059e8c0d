//! What an API key may do.
//!
//! | scope | allows |
//! |---|---|
//! | `admin` | everything: publish and delete any package, set hooks |
//! | `publish:PATTERN` | publish and delete versions of packages whose name matches PATTERN |
//! | `hooks:PATTERN` | set `BeforeUpdate`/`AfterUpdate`/`restore` (commands devices run) on matching packages |
//!
//! A PATTERN is a package name in which `*` matches any run of characters
//! (`org.example.*`, `*`). A key holds one or more scopes, written
//! space-separated (`publish:org.example.* hooks:org.example.app`).
//!
//! ```
//! use ota_core::scope::Scopes;
//! let s: Scopes = "publish:org.example.*".parse().unwrap();
//! assert!(s.may_publish("org.example.app"));
//! assert!(!s.may_publish("com.other"));
//! assert!(!s.may_set_hooks("org.example.app"));
//! ```

use std::fmt;
use std::str::FromStr;

/// One scope of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Admin,
    /// Publish and delete versions of matching packages.
    Publish(String),
    /// Set hook commands on matching packages.
    Hooks(String),
}

/// The scopes a key holds (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

/// Why a scope list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {0:?}: expected admin, publish:PATTERN or hooks:PATTERN (PATTERN: a package name, * matches anything)")]
pub struct ScopeError(pub String);

fn check_pattern(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 128
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-' | b'*'))
}

/// Glob match where `*` matches any run (iterative, linear in practice).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if i < p.len() && p[i] == n[j] {
            i += 1;
            j += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&b| b == b'*')
}

impl Scope {
    fn parse(s: &str) -> Result<Self, ScopeError> {
        let err = || ScopeError(s.to_owned());
        match s.split_once(':') {
            None if s == "admin" => Ok(Scope::Admin),
            Some(("publish", p)) if check_pattern(p) => Ok(Scope::Publish(p.to_owned())),
            Some(("hooks", p)) if check_pattern(p) => Ok(Scope::Hooks(p.to_owned())),
            _ => Err(err()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Publish(p) => write!(f, "publish:{p}"),
            Scope::Hooks(p) => write!(f, "hooks:{p}"),
        }
    }
}

impl Scopes {
    /// The default for a new key: publish any package, no hooks, no admin.
    pub fn default_publisher() -> Self {
        Scopes(vec![Scope::Publish("*".into())])
    }
    /// Full access (keys created before scopes existed keep it).
    pub fn admin() -> Self {
        Scopes(vec![Scope::Admin])
    }
    /// True with the `admin` scope.
    pub fn is_admin(&self) -> bool {
        self.0.contains(&Scope::Admin)
    }
    /// May this key publish or delete versions of `package`?
    pub fn may_publish(&self, package: &str) -> bool {
        self.0.iter().any(|s| match s {
            Scope::Admin => true,
            Scope::Publish(p) => glob(p, package),
            Scope::Hooks(_) => false,
        })
    }
    /// May this key set hook commands on `package`?
    pub fn may_set_hooks(&self, package: &str) -> bool {
        self.0.iter().any(|s| match s {
            Scope::Admin => true,
            Scope::Hooks(p) => glob(p, package),
            Scope::Publish(_) => false,
        })
    }
    /// The scopes, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
}

impl FromStr for Scopes {
    type Err = ScopeError;
    /// Space- or comma-separated scopes; at least one.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let scopes = s
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|p| !p.is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if scopes.is_empty() {
            return Err(ScopeError(s.to_owned()));
        }
        Ok(Scopes(scopes))
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("org.example.*", "org.example.app"));
        assert!(!glob("org.example.*", "org.examplex"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXbYY"));
        assert!(glob("app", "app"));
        assert!(!glob("app", "app2"));
        assert!(glob("*-beta", "x-beta"));
    }

    #[test]
    fn parse_and_rights() {
        let s: Scopes = "publish:org.* hooks:org.app".parse().unwrap();
        assert!(s.may_publish("org.app") && s.may_set_hooks("org.app"));
        assert!(!s.may_set_hooks("org.other") && !s.is_admin());
        assert_eq!(s.to_string(), "publish:org.* hooks:org.app");
        assert!(Scopes::admin().may_set_hooks("x") && Scopes::admin().may_publish("y"));
        for bad in [
            "",
            "root",
            "publish:",
            "publish:a/b",
            "hooks",
            "admin:x",
            "publish:a b:c",
        ] {
            assert!(bad.parse::<Scopes>().is_err(), "{bad:?}");
        }
        let only_hooks: Scopes = "hooks:*".parse().unwrap();
        assert!(!only_hooks.may_publish("x"));
    }
}
