//! Dependencies between a device's packages: constraints such as
//! `{"libfoo": ">=1.2, <2"}`, and the order a cycle applies updates in.
//!
//! A cycle is planned as a whole before anything is installed. Packages
//! linked by dependencies form a set; a set with a dependency cycle, a
//! dependency the device does not have, or a constraint the planned
//! versions do not meet is refused whole: nothing of it is applied, and
//! every package in it gets the reason. Other sets go ahead, each package
//! after the packages it depends on.

use ota_core::Version;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Ge,
    Gt,
    Le,
    Lt,
    Eq,
    Ne,
}

/// A version constraint: comparisons that must all hold (`>=1.2, <2`);
/// empty or `*` accepts any version. Comparisons use version precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Constraint(Vec<(Op, Version)>);

impl Constraint {
    /// Any version.
    pub fn any() -> Self {
        Constraint(Vec::new())
    }

    /// Parses `>=1.2`, `>1`, `<=2`, `<2`, `=1.2` (or `==`, or a bare
    /// version), `!=1.3`, joined by commas or spaces; `*` or empty for any.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for term in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty() && *t != "*")
        {
            let (op, rest) = [
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("==", Op::Eq),
                ("!=", Op::Ne),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("=", Op::Eq),
            ]
            .iter()
            .find_map(|(p, op)| term.strip_prefix(p).map(|r| (*op, r)))
            .unwrap_or((Op::Eq, term));
            let v = Version::parse(rest.trim())
                .map_err(|e| format!("{term:?} in constraint {text:?}: {e}"))?;
            out.push((op, v));
        }
        Ok(Constraint(out))
    }

    /// True when `v` meets every comparison.
    pub fn matches(&self, v: &Version) -> bool {
        self.0.iter().all(|(op, want)| {
            let o = v.cmp_precedence(want);
            match op {
                Op::Ge => o != Ordering::Less,
                Op::Gt => o == Ordering::Greater,
                Op::Le => o != Ordering::Greater,
                Op::Lt => o == Ordering::Less,
                Op::Eq => o == Ordering::Equal,
                Op::Ne => o != Ordering::Equal,
            }
        })
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("*");
        }
        for (i, (op, v)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let op = match op {
                Op::Ge => ">=",
                Op::Gt => ">",
                Op::Le => "<=",
                Op::Lt => "<",
                Op::Eq => "=",
                Op::Ne => "!=",
            };
            write!(f, "{op}{}", v.as_str())?;
        }
        Ok(())
    }
}

/// A package as a cycle plans it: the version it will have (the update's
/// destination, or the installed one) and that version's dependencies.
#[derive(Clone, Debug)]
pub struct Node {
    /// Package name.
    pub name: String,
    /// Planned version.
    pub version: Version,
    /// The planned version's dependencies.
    pub deps: BTreeMap<String, Constraint>,
}

/// The plan: packages in the order to apply (dependencies first), and the
/// packages refused, with the reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Apply order.
    pub order: Vec<String>,
    /// Refused packages and why.
    pub refused: BTreeMap<String, String>,
}

/// Orders `nodes` and refuses every set with a cycle or an unmet
/// constraint.
pub fn plan(nodes: &[Node]) -> Plan {
    let by_name: BTreeMap<&str, &Node> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    // Problems, per package that has them.
    let mut problems: BTreeMap<&str, String> = BTreeMap::new();
    for n in nodes {
        for (dep, c) in &n.deps {
            let why = match by_name.get(dep.as_str()) {
                None => format!(
                    "{} needs {dep} {c}, which this device does not have",
                    n.name
                ),
                Some(d) if !c.matches(&d.version) => format!(
                    "{} {} needs {dep} {c}, but {dep} would be at {}",
                    n.name,
                    n.version.as_str(),
                    d.version.as_str()
                ),
                Some(_) => continue,
            };
            problems.entry(n.name.as_str()).or_insert(why);
        }
    }
    // Topological order (Kahn), smallest name first among the ready.
    let mut waiting: BTreeMap<&str, usize> = nodes
        .iter()
        .map(|n| {
            let count = n
                .deps
                .keys()
                .filter(|d| by_name.contains_key(d.as_str()))
                .count();
            (n.name.as_str(), count)
        })
        .collect();
    let mut ready: BTreeSet<&str> = waiting
        .iter()
        .filter(|(_, c)| **c == 0)
        .map(|(n, _)| *n)
        .collect();
    let mut order = Vec::new();
    while let Some(n) = ready.pop_first() {
        waiting.remove(n);
        order.push(n);
        for m in nodes.iter().filter(|m| m.deps.contains_key(n)) {
            if let Some(c) = waiting.get_mut(m.name.as_str()) {
                *c -= 1;
                if *c == 0 {
                    ready.insert(m.name.as_str());
                }
            }
        }
    }
    for n in waiting.keys() {
        problems
            .entry(n)
            .or_insert_with(|| format!("{n} is part of a dependency cycle"));
    }
    // Refuse whole sets: the connected components of the dependency graph.
    let mut refused = BTreeMap::new();
    for (culprit, why) in &problems {
        for member in component(nodes, culprit) {
            refused
                .entry(member.to_owned())
                .or_insert_with(|| why.clone());
        }
    }
    Plan {
        order: order
            .into_iter()
            .filter(|n| !refused.contains_key(*n))
            .map(str::to_owned)
            .collect(),
        refused,
    }
}

fn component<'a>(nodes: &'a [Node], start: &'a str) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::from([start]);
    let mut todo = vec![start];
    while let Some(n) = todo.pop() {
        for m in nodes {
            let neighbours: Vec<&str> = if m.name == n {
                m.deps.keys().map(String::as_str).collect()
            } else if m.deps.contains_key(n) {
                vec![m.name.as_str()]
            } else {
                continue;
            };
            for x in neighbours {
                if nodes.iter().any(|k| k.name == x) && seen.insert(x) {
                    todo.push(x);
                }
            }
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, version: &str, deps: &[(&str, &str)]) -> Node {
        Node {
            name: name.into(),
            version: Version::parse(version).unwrap(),
            deps: deps
                .iter()
                .map(|(d, c)| (d.to_string(), Constraint::parse(c).unwrap()))
                .collect(),
        }
    }

    #[test]
    fn constraints() {
        let c = Constraint::parse(">=1.2, <2").unwrap();
        for (v, ok) in [
            ("1.1", false),
            ("1.2", true),
            ("1.10", true),
            ("2.0", false),
        ] {
            assert_eq!(c.matches(&Version::parse(v).unwrap()), ok, "{v}");
        }
        assert!(Constraint::parse("*")
            .unwrap()
            .matches(&Version::parse("0").unwrap()));
        assert!(Constraint::parse("1.2")
            .unwrap()
            .matches(&Version::parse("1.2+b7").unwrap()));
        assert!(!Constraint::parse("!=1.2")
            .unwrap()
            .matches(&Version::parse("1.2").unwrap()));
        assert!(Constraint::parse(">=x").is_err());
        assert_eq!(
            Constraint::parse(">=1.2 <2").unwrap().to_string(),
            ">=1.2, <2"
        );
    }

    #[test]
    fn dependencies_first() {
        let p = plan(&[
            node("app", "2", &[("libfoo", ">=1.2"), ("libbar", "*")]),
            node("libbar", "1", &[]),
            node("libfoo", "1.3", &[("libbar", ">=1")]),
            node("zed", "1", &[]),
        ]);
        assert_eq!(p.order, ["libbar", "libfoo", "app", "zed"]);
        assert!(p.refused.is_empty());
    }

    #[test]
    fn a_bad_set_is_refused_whole_and_others_go_ahead() {
        let p = plan(&[
            node("app", "2", &[("libfoo", ">=1.2")]),
            node("libfoo", "1.1", &[]),
            node("other", "1", &[]),
            node("a", "1", &[("b", "*")]),
            node("b", "1", &[("a", "*")]),
            node("c", "1", &[("b", "*")]),
            node("lonely", "1", &[("ghost", "*")]),
        ]);
        assert_eq!(p.order, ["other"]);
        assert!(p.refused["app"].contains("libfoo would be at 1.1"));
        assert_eq!(p.refused["libfoo"], p.refused["app"]);
        assert!(p.refused["a"].contains("cycle"));
        assert!(p.refused["c"].contains("cycle"));
        assert!(p.refused["lonely"].contains("does not have"));
    }
}
