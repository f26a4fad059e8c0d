//! Update strategies: which version a client should move to, and whether it
//! must.
//!
//! The file is a JSON list with one object per package:
//!
//! ```json
//! [{ "name": "app demo",
//!    "update":   [{ "strategy": "optional",
//!                   "condition": { "version": { "compare": "<", "value": "0.0.5" },
//!                                  "type": { "assign": "==", "name": "demo type" } },
//!                   "dest": "0.0.5" }],
//!    "rollback": [{ "strategy": "compulsory",
//!                   "condition": { "version": { "compare": ">", "value": "0.1.0" } },
//!                   "dest": "0.1.0" }] }]
//! ```
//!
//! `compare` is one of `<` `<=` `>` `>=` `==` `!=` (by version precedence),
//! `assign` is `==` or `!=`; a missing `version` or `type` condition always
//! holds. `dest` is a version or `newest` (the newest version that can be
//! served). Rules are tried in this order, the first that holds wins:
//! every rule whose `dest` is `newest` (update list first, then rollback,
//! each in file order), then the other `update` rules, then the other
//! `rollback` rules. A rule whose destination would not move the client in
//! its list's direction (an update to an older or equal version) is
//! skipped. Unknown keys are errors, reported with their JSON path.
//!
//! ```
//! use ota_graph::strategy::{Action, Query, Strategies};
//! let s = Strategies::parse(r#"[{"name":"app","update":[{"strategy":"optional",
//!     "condition":{"version":{"compare":"<","value":"2.0"}},"dest":"newest"}]}]"#).unwrap();
//! let d = s.decide(&Query { name: "app", version: "1.0", client_type: "x" }, Some("2.1")).unwrap();
//! assert_eq!((d.action, d.dest.as_str()), (Action::Update, "2.1"));
//! ```

use ota_core::Version;
use serde_json::{Map, Value};
use std::cmp::Ordering;

/// Which way a decision moves the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// To a newer version.
    Update,
    /// To an older version.
    Rollback,
}

impl Action {
    /// `"Update"` or `"Rollback"`, as the protocol writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Update => "Update",
            Action::Rollback => "Rollback",
        }
    }
}

/// Whether the client may decline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The client chooses.
    Optional,
    /// The client must move.
    Compulsory,
}

impl Kind {
    /// `"Optional"` or `"Compulsory"`, as the protocol writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Optional => "Optional",
            Kind::Compulsory => "Compulsory",
        }
    }
}

/// What a client asks about.
#[derive(Clone, Copy, Debug)]
pub struct Query<'a> {
    /// The package name.
    pub name: &'a str,
    /// The installed version.
    pub version: &'a str,
    /// The client type.
    pub client_type: &'a str,
}

/// The answer to a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Update or rollback.
    pub action: Action,
    /// Optional or compulsory.
    pub strategy: Kind,
    /// The client's version.
    pub from: String,
    /// Where to go.
    pub dest: String,
}

/// A strategy file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("strategy file, at {path}: {why}")]
pub struct StrategyError {
    /// JSON path of the offending value, e.g. `[0].update[1].dest`.
    pub path: String,
    /// What is wrong.
    pub why: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Compare {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Clone, Debug)]
struct Rule {
    kind: Kind,
    version: Option<(Compare, Version)>,
    client_type: Option<(bool, String)>,
    /// `None` means `newest`.
    dest: Option<Version>,
}

#[derive(Clone, Debug)]
struct PackageRules {
    name: String,
    update: Vec<Rule>,
    rollback: Vec<Rule>,
}

/// A parsed strategy file.
#[derive(Clone, Debug, Default)]
pub struct Strategies {
    packages: Vec<PackageRules>,
}

fn err(path: &str, why: impl Into<String>) -> StrategyError {
    StrategyError {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.to_owned()
        },
        why: why.into(),
    }
}

fn object<'a>(
    v: &'a Value,
    path: &str,
    keys: &[&str],
) -> Result<&'a Map<String, Value>, StrategyError> {
    let map = v
        .as_object()
        .ok_or_else(|| err(path, "expected an object"))?;
    if let Some(k) = map.keys().find(|k| !keys.contains(&k.as_str())) {
        return Err(err(
            &format!("{path}.{k}"),
            format!("unknown key (expected one of: {})", keys.join(", ")),
        ));
    }
    Ok(map)
}

fn string<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, StrategyError> {
    let p = format!("{path}.{key}");
    match map.get(key) {
        None => Err(err(&p, "missing")),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(err(&p, "expected a string")),
    }
}

fn version(text: &str, path: &str) -> Result<Version, StrategyError> {
    Version::parse(text).map_err(|e| err(path, e.to_string()))
}

fn parse_rule(v: &Value, path: &str) -> Result<Rule, StrategyError> {
    let map = object(v, path, &["strategy", "condition", "dest"])?;
    let kind = match string(map, "strategy", path)?.to_ascii_lowercase().as_str() {
        "optional" => Kind::Optional,
        "compulsory" => Kind::Compulsory,
        other => {
            return Err(err(
                &format!("{path}.strategy"),
                format!("{other:?}: expected \"optional\" or \"compulsory\""),
            ))
        }
    };
    let dest_text = string(map, "dest", path)?;
    let dest = match dest_text {
        "newest" => None,
        v => Some(version(v, &format!("{path}.dest"))?),
    };
    let (mut version_cond, mut type_cond) = (None, None);
    if let Some(cond) = map.get("condition") {
        let cpath = format!("{path}.condition");
        let cond = object(cond, &cpath, &["version", "type"])?;
        if let Some(v) = cond.get("version") {
            let vpath = format!("{cpath}.version");
            let v = object(v, &vpath, &["compare", "value"])?;
            let op = match string(v, "compare", &vpath)? {
                "<" => Compare::Lt,
                "<=" => Compare::Le,
                ">" => Compare::Gt,
                ">=" => Compare::Ge,
                "==" => Compare::Eq,
                "!=" => Compare::Ne,
                other => {
                    return Err(err(
                        &format!("{vpath}.compare"),
                        format!("{other:?}: expected one of < <= > >= == !="),
                    ))
                }
            };
            let value = version(string(v, "value", &vpath)?, &format!("{vpath}.value"))?;
            version_cond = Some((op, value));
        }
        if let Some(t) = cond.get("type") {
            let tpath = format!("{cpath}.type");
            let t = object(t, &tpath, &["assign", "name"])?;
            let equal = match string(t, "assign", &tpath)? {
                "==" => true,
                "!=" => false,
                other => {
                    return Err(err(
                        &format!("{tpath}.assign"),
                        format!("{other:?}: expected == or !="),
                    ))
                }
            };
            type_cond = Some((equal, string(t, "name", &tpath)?.to_owned()));
        }
    }
    Ok(Rule {
        kind,
        version: version_cond,
        client_type: type_cond,
        dest,
    })
}

impl Strategies {
    /// Parses and validates a strategy file.
    pub fn parse(text: &str) -> Result<Self, StrategyError> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            err(
                &format!("line {} column {}", e.line(), e.column()),
                format!("not valid JSON: {e}"),
            )
        })?;
        let list = value
            .as_array()
            .ok_or_else(|| err("", "expected a list of packages"))?;
        let mut packages = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let path = format!("[{i}]");
            let map = object(p, &path, &["name", "update", "rollback"])?;
            let name = string(map, "name", &path)?.to_owned();
            let rules = |key: &str| -> Result<Vec<Rule>, StrategyError> {
                match map.get(key) {
                    None => Ok(Vec::new()),
                    Some(Value::Array(a)) => a
                        .iter()
                        .enumerate()
                        .map(|(k, r)| parse_rule(r, &format!("{path}.{key}[{k}]")))
                        .collect(),
                    Some(_) => Err(err(&format!("{path}.{key}"), "expected a list")),
                }
            };
            let update = rules("update")?;
            let rollback = rules("rollback")?;
            packages.push(PackageRules {
                name,
                update,
                rollback,
            });
        }
        Ok(Strategies { packages })
    }

    /// True when the document has rules for the package `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.packages.iter().any(|p| p.name == name)
    }

    /// The decision for a client, given the newest servable version of its
    /// package (for `dest: newest`); `None` when no rule moves it.
    pub fn decide(&self, q: &Query<'_>, newest: Option<&str>) -> Option<Decision> {
        let current = Version::parse(q.version).ok()?;
        let newest = newest.and_then(|n| Version::parse(n).ok());
        let pkg = self.packages.iter().find(|p| p.name == q.name)?;
        let all: Vec<(&str, &Rule)> = pkg
            .update
            .iter()
            .map(|r| ("update", r))
            .chain(pkg.rollback.iter().map(|r| ("rollback", r)))
            .collect();
        let ordered = all
            .iter()
            .filter(|(_, r)| r.dest.is_none())
            .chain(
                all.iter()
                    .filter(|(l, r)| *l == "update" && r.dest.is_some()),
            )
            .chain(
                all.iter()
                    .filter(|(l, r)| *l == "rollback" && r.dest.is_some()),
            );
        for (list, rule) in ordered {
            if !rule.holds(&current, q.client_type) {
                continue;
            }
            let Some(dest) = rule.dest.as_ref().or(newest.as_ref()) else {
                continue;
            };
            let action = match dest.cmp_precedence(&current) {
                Ordering::Greater if *list == "update" => Action::Update,
                Ordering::Less if *list == "rollback" => Action::Rollback,
                _ => continue,
            };
            return Some(Decision {
                action,
                strategy: rule.kind,
                from: q.version.to_owned(),
                dest: dest.as_str().to_owned(),
            });
        }
        None
    }
}

impl Rule {
    fn holds(&self, current: &Version, client_type: &str) -> bool {
        let version_ok = self.version.as_ref().is_none_or(|(op, value)| {
            let o = current.cmp_precedence(value);
            match op {
                Compare::Lt => o == Ordering::Less,
                Compare::Le => o != Ordering::Greater,
                Compare::Gt => o == Ordering::Greater,
                Compare::Ge => o != Ordering::Less,
                Compare::Eq => o == Ordering::Equal,
                Compare::Ne => o != Ordering::Equal,
            }
        });
        let type_ok = self
            .client_type
            .as_ref()
            .is_none_or(|(equal, name)| (name == client_type) == *equal);
        version_ok && type_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the strategy format's documentation.
    const DEMO: &str = r#"[
      { "name": "app demo",
        "update": [
          { "strategy": "optional",
            "condition": { "version": { "compare": "<", "value": "0.0.5" },
                           "type": { "assign": "==", "name": "demo type" } },
            "dest": "0.0.5" } ],
        "rollback": [
          { "strategy": "compulsory",
            "condition": { "version": { "compare": ">", "value": "0.1.0" },
                           "type": { "assign": "==", "name": "demo type" } },
            "dest": "0.1.0" },
          { "strategy": "optional",
            "condition": { "version": { "compare": ">", "value": "0.0.5" },
                           "type": { "assign": "==", "name": "demo type" } },
            "dest": "0.0.5" } ] } ]"#;

    fn ask(
        s: &Strategies,
        version: &str,
        ty: &str,
        newest: Option<&str>,
    ) -> Option<(Action, Kind, String)> {
        s.decide(
            &Query {
                name: "app demo",
                version,
                client_type: ty,
            },
            newest,
        )
        .map(|d| (d.action, d.strategy, d.dest))
    }

    #[test]
    fn the_demo_reads_as_documented() {
        let s = Strategies::parse(DEMO).unwrap();
        // Below 0.0.5: may update to 0.0.5.
        assert_eq!(
            ask(&s, "0.0.1", "demo type", None),
            Some((Action::Update, Kind::Optional, "0.0.5".into()))
        );
        // Above 0.1.0: must roll back to 0.1.0 (the first rollback rule wins).
        assert_eq!(
            ask(&s, "0.2.0", "demo type", None),
            Some((Action::Rollback, Kind::Compulsory, "0.1.0".into()))
        );
        // Between 0.0.5 and 0.1.0: may roll back to 0.0.5.
        assert_eq!(
            ask(&s, "0.0.7", "demo type", None),
            Some((Action::Rollback, Kind::Optional, "0.0.5".into()))
        );
        // At 0.0.5 nothing applies; another type matches nothing; another package neither.
        assert_eq!(ask(&s, "0.0.5", "demo type", None), None);
        assert_eq!(ask(&s, "0.0.1", "other type", None), None);
        assert!(s
            .decide(
                &Query {
                    name: "other",
                    version: "0.0.1",
                    client_type: "demo type"
                },
                None
            )
            .is_none());
    }

    #[test]
    fn newest_comes_first_and_follows_the_catalogue() {
        let s = Strategies::parse(r#"[{"name":"app demo",
            "update":[{"strategy":"optional","condition":{"version":{"compare":"<","value":"1.0"}},"dest":"0.9"},
                      {"strategy":"compulsory","condition":{"type":{"assign":"!=","name":"beta"}},"dest":"newest"}]}]"#).unwrap();
        // The newest rule is tried before the earlier update rule.
        assert_eq!(
            ask(&s, "0.5", "stable", Some("2.0")),
            Some((Action::Update, Kind::Compulsory, "2.0".into()))
        );
        // For beta clients it does not hold: the ordinary rule applies.
        assert_eq!(
            ask(&s, "0.5", "beta", Some("2.0")),
            Some((Action::Update, Kind::Optional, "0.9".into()))
        );
        // Already at the newest: nothing.
        assert_eq!(ask(&s, "2.0", "stable", Some("2.0")), None);
        // No servable version yet: the newest rule is passed over.
        assert_eq!(
            ask(&s, "0.5", "stable", None),
            Some((Action::Update, Kind::Optional, "0.9".into()))
        );
    }

    #[test]
    fn every_comparison() {
        for (op, at, holds) in [
            ("<", "1.0", false),
            ("<=", "1.0", true),
            (">", "1.0", false),
            (">=", "1.0", true),
            ("==", "1.0.0", true),
            ("!=", "1.0", false),
            ("!=", "0.9", true),
            ("<", "0.9", true),
        ] {
            let s = Strategies::parse(&format!(
                r#"[{{"name":"app demo","update":[{{"strategy":"optional",
                "condition":{{"version":{{"compare":"{op}","value":"1.0"}}}},"dest":"5.0"}}]}}]"#
            ))
            .unwrap();
            assert_eq!(ask(&s, at, "t", None).is_some(), holds, "{at} {op} 1.0");
        }
    }

    #[test]
    fn errors_name_the_path() {
        let cases = [
            (r#"{"name":"x"}"#, "$"),
            (
                r#"[{"name":"x","update":[{"strategy":"maybe","dest":"1"}]}]"#,
                "[0].update[0].strategy",
            ),
            (
                r#"[{"name":"x","rollback":[{"strategy":"optional","dest":"v1"}]}]"#,
                "[0].rollback[0].dest",
            ),
            (
                r#"[{"name":"x","update":[{"strategy":"optional","dest":"1","condition":{"version":{"compare":"~","value":"1"}}}]}]"#,
                "[0].update[0].condition.version.compare",
            ),
            (
                r#"[{"name":"x","update":[{"strategy":"optional","dest":"1","condition":{"type":{"assign":"=","name":"a"}}}]}]"#,
                "[0].update[0].condition.type.assign",
            ),
            (r#"[{"name":"x","udpate":[]}]"#, "[0].udpate"),
            (r#"[{"update":[]}]"#, "[0].name"),
        ];
        for (text, path) in cases {
            let e = Strategies::parse(text).unwrap_err();
            assert_eq!(e.path, path, "{text}: {e}");
        }
        let e = Strategies::parse("[{").unwrap_err();
        assert!(e.path.starts_with("line 1"), "{e}");
    }
}
