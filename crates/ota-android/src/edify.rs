//! The edify language of `updater-script`: lexer, parser and evaluator
//! (AOSP `bootable/recovery/edify`).
//!
//! Everything is an expression whose value is a string (or a blob, from
//! `package_extract_file` with one argument). The empty string is false,
//! any other is true. Operators, loosest first: `;` (sequence; a trailing
//! `;` is allowed), `||`, `&&`, `==` `!=`, `+` (concatenation), `!`.
//! `if c then a [else b] endif`. Bare words (`[A-Za-z0-9_:/.]+`) are
//! strings; quoted strings take `\n \t \" \\ \xHH`; `#` starts a comment.
//! Built-ins evaluated here: `ifelse`, `abort`, `assert`, `concat`,
//! `is_substring`, `stdout`, `sleep`, `less_than_int`, `greater_than_int`;
//! every other call goes to a [`Host`], which must reject names it does not
//! know.

use crate::error::{AndroidError, Result};

/// A value: text, or binary data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// Binary data.
    Blob(Vec<u8>),
}

impl Value {
    /// `"t"`, edify's true.
    pub fn t() -> Value {
        Value::Str("t".into())
    }
    /// `""`, edify's false.
    pub fn f() -> Value {
        Value::Str(String::new())
    }
    /// A boolean as edify writes it.
    pub fn bool(b: bool) -> Value {
        if b {
            Value::t()
        } else {
            Value::f()
        }
    }
    /// Whether the value counts as true (non-empty).
    pub fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::Blob(b) => !b.is_empty(),
        }
    }
    /// The string, or an error naming `func` when it is a blob.
    pub fn str(&self, func: &str) -> Result<&str> {
        match self {
            Value::Str(s) => Ok(s),
            Value::Blob(_) => Err(AndroidError::Aborted(format!(
                "{func}() expects a string argument, got binary data"
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Str(String),
    LParen,
    RParen,
    Comma,
    Semi,
    Plus,
    Not,
    Eq,
    Ne,
    And,
    Or,
    If,
    Then,
    Else,
    Endif,
    Eof,
}

/// An expression with its byte span in the source.
#[derive(Clone, Debug)]
pub struct Expr {
    kind: Kind,
    start: usize,
    end: usize,
}

#[derive(Clone, Debug)]
enum Kind {
    Lit(String),
    Call(String, Vec<Expr>),
    /// Statements in order (flat, so long scripts do not recurse deeply).
    Seq(Vec<Expr>),
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    If(Box<Expr>, Box<Expr>, Option<Box<Expr>>),
}

/// A parsed script: its source and its expression.
#[derive(Debug)]
pub struct Program {
    source: String,
    root: Expr,
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = &src[..pos.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

fn lex(src: &str) -> Result<Vec<(Tok, usize, usize)>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |pos: usize, message: String| {
        let (line, column) = line_col(src, pos);
        AndroidError::Syntax {
            line,
            column,
            message,
        }
    };
    while i < b.len() {
        let c = b[i];
        let start = i;
        let tok = match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b',' => Tok::Comma,
            b';' => Tok::Semi,
            b'+' => Tok::Plus,
            b'=' if b.get(i + 1) == Some(&b'=') => {
                i += 1;
                Tok::Eq
            }
            b'!' if b.get(i + 1) == Some(&b'=') => {
                i += 1;
                Tok::Ne
            }
            b'!' => Tok::Not,
            b'&' if b.get(i + 1) == Some(&b'&') => {
                i += 1;
                Tok::And
            }
            b'|' if b.get(i + 1) == Some(&b'|') => {
                i += 1;
                Tok::Or
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(err(start, "unterminated string".into())),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let e = b.get(i + 1).copied();
                            i += 2;
                            match e {
                                Some(b'n') => s.push(b'\n'),
                                Some(b't') => s.push(b'\t'),
                                Some(b'"') => s.push(b'"'),
                                Some(b'\\') => s.push(b'\\'),
                                Some(b'x') => {
                                    let h = src
                                        .get(i..i + 2)
                                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                                    let h = h.ok_or_else(|| {
                                        err(i - 2, "\\x needs two hex digits".into())
                                    })?;
                                    s.push(h);
                                    i += 2;
                                }
                                _ => {
                                    return Err(err(
                                        i - 2,
                                        "unknown escape (\\n \\t \\\" \\\\ \\xHH)".into(),
                                    ))
                                }
                            }
                            continue;
                        }
                        Some(&ch) => s.push(ch),
                    }
                    i += 1;
                }
                let s =
                    String::from_utf8(s).map_err(|_| err(start, "string is not UTF-8".into()))?;
                out.push((Tok::Str(s), start, i + 1));
                i += 1;
                continue;
            }
            c if c.is_ascii_alphanumeric() || b"_:/.".contains(&c) => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b"_:/.".contains(&b[i])) {
                    i += 1;
                }
                let w = &src[start..i];
                let t = match w {
                    "if" => Tok::If,
                    "then" => Tok::Then,
                    "else" => Tok::Else,
                    "endif" => Tok::Endif,
                    _ => Tok::Str(w.to_string()),
                };
                out.push((t, start, i));
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(err(start, format!("unexpected character {ch:?}")));
            }
        };
        i += 1;
        out.push((tok, start, i));
    }
    out.push((Tok::Eof, src.len(), src.len()));
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    depth: usize,
}

/// Nesting deeper than this is refused (no stack overflow on hostile input).
const MAX_DEPTH: usize = 100;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn next(&mut self) -> (Tok, usize, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn err(&self, message: String) -> AndroidError {
        let (line, column) = line_col(self.src, self.toks[self.pos].1);
        AndroidError::Syntax {
            line,
            column,
            message,
        }
    }
    fn expect(&mut self, t: Tok, what: &str) -> Result<usize> {
        if *self.peek() == t {
            Ok(self.next().2)
        } else {
            Err(self.err(format!("expected {what}, found {}", describe(self.peek()))))
        }
    }
    fn starts_expr(&self) -> bool {
        matches!(self.peek(), Tok::Str(_) | Tok::LParen | Tok::Not | Tok::If)
    }

    fn expr(&mut self, min: u8) -> Result<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err(format!("expression nested more than {MAX_DEPTH} deep")));
        }
        let mut left = self.prefix()?;
        loop {
            let prec = match self.peek() {
                Tok::Semi => 1,
                Tok::Or => 2,
                Tok::And => 3,
                Tok::Eq | Tok::Ne => 4,
                Tok::Plus => 5,
                _ => break,
            };
            if prec < min {
                break;
            }
            let (op, _, op_end) = self.next();
            let start = left.start;
            if op == Tok::Semi {
                let mut items = match left.kind {
                    Kind::Seq(v) => v,
                    k => vec![Expr {
                        kind: k,
                        start,
                        end: left.end,
                    }],
                };
                let mut end = op_end;
                if self.starts_expr() {
                    let right = self.expr(prec + 1)?;
                    end = right.end;
                    items.push(right);
                }
                left = Expr {
                    kind: Kind::Seq(items),
                    start,
                    end,
                };
                continue;
            }
            let right = self.expr(prec + 1)?;
            let end = right.end;
            let (l, r) = (Box::new(left), Box::new(right));
            let kind = match op {
                Tok::Or => Kind::Or(l, r),
                Tok::And => Kind::And(l, r),
                Tok::Eq => Kind::Eq(l, r),
                Tok::Ne => Kind::Ne(l, r),
                _ => Kind::Concat(l, r),
            };
            left = Expr { kind, start, end };
        }
        self.depth -= 1;
        Ok(left)
    }

    fn prefix(&mut self) -> Result<Expr> {
        let (t, start, end) = self.next();
        match t {
            Tok::Str(s) => {
                if *self.peek() != Tok::LParen {
                    return Ok(Expr {
                        kind: Kind::Lit(s),
                        start,
                        end,
                    });
                }
                self.next();
                let mut args = Vec::new();
                if *self.peek() != Tok::RParen {
                    loop {
                        args.push(self.expr(0)?);
                        if *self.peek() == Tok::Comma {
                            self.next();
                            continue;
                        }
                        break;
                    }
                }
                let end = self.expect(Tok::RParen, "',' or ')'")?;
                Ok(Expr {
                    kind: Kind::Call(s, args),
                    start,
                    end,
                })
            }
            Tok::LParen => {
                let inner = self.expr(0)?;
                let end = self.expect(Tok::RParen, "')'")?;
                Ok(Expr {
                    kind: inner.kind,
                    start,
                    end,
                })
            }
            Tok::Not => {
                let e = self.expr(6)?;
                let end = e.end;
                Ok(Expr {
                    kind: Kind::Not(Box::new(e)),
                    start,
                    end,
                })
            }
            Tok::If => {
                let c = self.expr(0)?;
                self.expect(Tok::Then, "'then'")?;
                let a = self.expr(0)?;
                let b = if *self.peek() == Tok::Else {
                    self.next();
                    Some(Box::new(self.expr(0)?))
                } else {
                    None
                };
                let end = self.expect(Tok::Endif, "'else' or 'endif'")?;
                Ok(Expr {
                    kind: Kind::If(Box::new(c), Box::new(a), b),
                    start,
                    end,
                })
            }
            other => {
                self.pos = self.pos.saturating_sub(1);
                Err(self.err(format!(
                    "expected an expression, found {}",
                    describe(&other)
                )))
            }
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Str(s) => format!("{s:?}"),
        Tok::Eof => "the end of the script".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Semi => "';'".into(),
        Tok::Plus => "'+'".into(),
        Tok::Not => "'!'".into(),
        Tok::Eq => "'=='".into(),
        Tok::Ne => "'!='".into(),
        Tok::And => "'&&'".into(),
        Tok::Or => "'||'".into(),
        Tok::If => "'if'".into(),
        Tok::Then => "'then'".into(),
        Tok::Else => "'else'".into(),
        Tok::Endif => "'endif'".into(),
    }
}

/// Parses a whole script.
pub fn parse(source: &str) -> Result<Program> {
    let toks = lex(source)?;
    let mut p = Parser {
        src: source,
        toks,
        pos: 0,
        depth: 0,
    };
    if *p.peek() == Tok::Eof {
        return Err(p.err("the script is empty".into()));
    }
    let root = p.expr(0)?;
    if *p.peek() != Tok::Eof {
        return Err(p.err(format!(
            "expected an operator or the end, found {}",
            describe(p.peek())
        )));
    }
    Ok(Program {
        source: source.to_string(),
        root,
    })
}

/// What runs the functions that are not built in (the recovery's).
pub trait Host {
    /// Runs `name` with evaluated arguments. Unknown names must be errors.
    fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value>;
    /// Where `stdout()` writes.
    fn stdout(&mut self, text: &str);
}

/// An integer argument; `None` (comparison false, as in edify) when the
/// text is not an integer.
fn int_arg(func: &str, v: &Value) -> Result<Option<i64>> {
    Ok(v.str(func)?.trim().parse().ok())
}

impl Program {
    /// Runs the script; an `abort`, a failed `assert` or a failing function
    /// ends it with [`AndroidError::Aborted`].
    pub fn run(&self, host: &mut dyn Host) -> Result<Value> {
        self.eval(&self.root, host)
    }

    fn eval(&self, e: &Expr, host: &mut dyn Host) -> Result<Value> {
        Ok(match &e.kind {
            Kind::Lit(s) => Value::Str(s.clone()),
            Kind::Seq(items) => {
                let mut v = Value::f();
                for i in items {
                    v = self.eval(i, host)?;
                }
                v
            }
            Kind::Or(a, b) => {
                let v = self.eval(a, host)?;
                if v.truthy() {
                    v
                } else {
                    self.eval(b, host)?
                }
            }
            Kind::And(a, b) => {
                let v = self.eval(a, host)?;
                if !v.truthy() {
                    v
                } else {
                    self.eval(b, host)?
                }
            }
            Kind::Eq(a, b) => Value::bool(self.eval(a, host)? == self.eval(b, host)?),
            Kind::Ne(a, b) => Value::bool(self.eval(a, host)? != self.eval(b, host)?),
            Kind::Concat(a, b) => {
                let l = self.eval(a, host)?;
                let r = self.eval(b, host)?;
                Value::Str(format!("{}{}", l.str("+")?, r.str("+")?))
            }
            Kind::Not(a) => Value::bool(!self.eval(a, host)?.truthy()),
            Kind::If(c, a, b) => {
                if self.eval(c, host)?.truthy() {
                    self.eval(a, host)?
                } else if let Some(b) = b {
                    self.eval(b, host)?
                } else {
                    Value::f()
                }
            }
            Kind::Call(name, args) => self.call(name, args, host)?,
        })
    }

    fn call(&self, name: &str, args: &[Expr], host: &mut dyn Host) -> Result<Value> {
        let arity = |lo: usize, hi: usize| {
            if args.len() < lo || args.len() > hi {
                Err(AndroidError::Aborted(format!(
                    "{name}() expects {lo}..{hi} arguments, got {}",
                    args.len()
                )))
            } else {
                Ok(())
            }
        };
        match name {
            "ifelse" => {
                arity(2, 3)?;
                if self.eval(&args[0], host)?.truthy() {
                    self.eval(&args[1], host)
                } else if let Some(b) = args.get(2) {
                    self.eval(b, host)
                } else {
                    Ok(Value::f())
                }
            }
            "abort" => {
                let mut msg = String::new();
                for a in args {
                    msg.push_str(self.eval(a, host)?.str(name)?);
                }
                if msg.is_empty() {
                    msg = "called abort()".into();
                }
                Err(AndroidError::Aborted(msg))
            }
            "assert" => {
                for a in args {
                    if !self.eval(a, host)?.truthy() {
                        let text = &self.source[a.start..a.end];
                        return Err(AndroidError::Aborted(format!("assert failed: {text}")));
                    }
                }
                Ok(Value::t())
            }
            "concat" => {
                let mut s = String::new();
                for a in args {
                    s.push_str(self.eval(a, host)?.str(name)?);
                }
                Ok(Value::Str(s))
            }
            "is_substring" => {
                arity(2, 2)?;
                let needle = self.eval(&args[0], host)?;
                let hay = self.eval(&args[1], host)?;
                Ok(Value::bool(hay.str(name)?.contains(needle.str(name)?)))
            }
            "stdout" => {
                let mut s = String::new();
                for a in args {
                    s.push_str(self.eval(a, host)?.str(name)?);
                }
                host.stdout(&s);
                Ok(Value::Str(s))
            }
            "sleep" => {
                // Validated, not waited: a simulator has nothing to wait for.
                arity(1, 1)?;
                let v = self.eval(&args[0], host)?;
                match int_arg(name, &v)? {
                    Some(_) => Ok(v),
                    None => Err(AndroidError::Aborted(format!(
                        "sleep: {v:?} is not an integer"
                    ))),
                }
            }
            "less_than_int" | "greater_than_int" => {
                arity(2, 2)?;
                let a = int_arg(name, &self.eval(&args[0], host)?)?;
                let b = int_arg(name, &self.eval(&args[1], host)?)?;
                Ok(match (a, b) {
                    (Some(a), Some(b)) => Value::bool(if name == "less_than_int" {
                        a < b
                    } else {
                        a > b
                    }),
                    _ => Value::f(),
                })
            }
            _ => {
                let mut vals = Vec::with_capacity(args.len());
                for a in args {
                    vals.push(self.eval(a, host)?);
                }
                host.call(name, vals)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<String>);
    impl Host for Echo {
        fn call(&mut self, name: &str, args: Vec<Value>) -> Result<Value> {
            match name {
                "getprop" => Ok(Value::Str(
                    if args[0] == Value::Str("ro.product.device".into()) {
                        "crespo".into()
                    } else {
                        String::new()
                    },
                )),
                "ui_print" => {
                    self.0.push(args[0].str(name)?.to_string());
                    Ok(Value::t())
                }
                _ => Err(AndroidError::Aborted(format!("unknown function {name}"))),
            }
        }
        fn stdout(&mut self, text: &str) {
            self.0.push(text.to_string());
        }
    }

    fn run(src: &str) -> Result<(Value, Vec<String>)> {
        let mut h = Echo(Vec::new());
        let v = parse(src)?.run(&mut h)?;
        Ok((v, h.0))
    }

    #[test]
    fn operators_and_precedence() {
        assert_eq!(run("\"a\" + \"b\" == \"ab\"").unwrap().0, Value::t());
        assert_eq!(run("!\"\" && \"x\"").unwrap().0, Value::Str("x".into()));
        assert_eq!(run("\"\" || \"y\";").unwrap().0, Value::Str("y".into()));
        assert_eq!(run("a; b; c").unwrap().0, Value::Str("c".into()));
        assert_eq!(
            run("if \"\" then a else b endif").unwrap().0,
            Value::Str("b".into())
        );
        assert_eq!(run("ifelse(x != x, a)").unwrap().0, Value::f());
        assert_eq!(
            run("less_than_int(5, 10) && greater_than_int(11, 10)")
                .unwrap()
                .0,
            Value::t()
        );
        // Not an integer: false, as edify does (so an unset date passes the older-build check).
        assert_eq!(
            run("!less_than_int(1400000000, \"\")").unwrap().0,
            Value::t()
        );
        assert_eq!(
            run("concat(\"a\\x41\\n\", is_substring(b, abc))")
                .unwrap()
                .0,
            Value::Str("aA\nt".into())
        );
    }

    #[test]
    fn generated_device_assert_aborts_with_message() {
        let s = "getprop(\"ro.product.device\") == \"maguro\" || abort(\"This package is for \\\"maguro\\\" devices; this is a \\\"\" + getprop(\"ro.product.device\") + \"\\\".\");\nui_print(\"never\");";
        let e = run(s).unwrap_err().to_string();
        assert_eq!(
            e,
            "script aborted: This package is for \"maguro\" devices; this is a \"crespo\"."
        );
        let ok = s.replace("maguro", "crespo");
        assert_eq!(run(&ok).unwrap().1, ["never"]);
    }

    #[test]
    fn assert_names_the_failing_expression() {
        let e = run(
            "assert(getprop(\"ro.product.device\") == \"crespo\",\n  getprop(\"x\") == \"y\");",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "script aborted: assert failed: getprop(\"x\") == \"y\""
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        for (src, want) in [
            ("ui_print(\"a\"", "updater-script:1:13: expected ',' or ')'"),
            ("a;\n  ) b", "updater-script:2:3: expected an operator"),
            ("\"open", "updater-script:1:1: unterminated string"),
            ("a @ b", "updater-script:1:3: unexpected character '@'"),
            (
                "if a then b",
                "updater-script:1:12: expected 'else' or 'endif'",
            ),
            ("", "updater-script:1:1: the script is empty"),
        ] {
            let e = parse(src).unwrap_err().to_string();
            assert!(e.starts_with(want), "{src:?}: {e}");
        }
        let deep = "(".repeat(5000) + "a" + &")".repeat(5000);
        assert!(parse(&deep)
            .unwrap_err()
            .to_string()
            .contains("nested more than"));
        // A long script is a flat sequence, not a deep tree.
        let long = "ui_print(\"x\");\n".repeat(100_000);
        assert_eq!(run(&long).unwrap().1.len(), 100_000);
    }

    #[test]
    fn unknown_functions_are_errors() {
        assert_eq!(
            run("frobnicate(1)").unwrap_err().to_string(),
            "script aborted: unknown function frobnicate"
        );
    }
}
