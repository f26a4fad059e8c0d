//! Editing a JSON document in place: a value is replaced by its byte span,
//! so everything else — unknown keys, their order, whitespace, comments a
//! human lined up — stays exactly as it was. The agent records a new
//! installed version this way.
//!
//! The input must already be valid JSON (the config is parsed with serde
//! first); the scanner only finds spans.

use std::ops::Range;

/// Why a path could not be edited.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EditError {
    /// The text is not the JSON the path expects.
    #[error("{0}")]
    Shape(String),
}

struct Scanner<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn err(&self, what: &str) -> EditError {
        EditError::Shape(format!("{what} at byte {}", self.i))
    }

    fn string(&mut self) -> Result<Range<usize>, EditError> {
        let start = self.i;
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a string"));
        }
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => return Ok(start..self.i),
                _ => {}
            }
        }
        Err(self.err("unterminated string"))
    }

    /// Skips one value; returns its span.
    fn value(&mut self) -> Result<Range<usize>, EditError> {
        self.ws();
        let start = self.i;
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{') | Some(b'[') => {
                let mut depth = 0usize;
                while let Some(c) = self.peek() {
                    match c {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(start..self.i);
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
                return Err(self.err("unterminated object or array"));
            }
            Some(_) => {
                while let Some(c) = self.peek() {
                    if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return Err(self.err("expected a value"));
                }
            }
            None => return Err(self.err("expected a value")),
        }
        Ok(start..self.i)
    }
}

/// The members of the object at `span`: (key, key span, value span).
fn members(text: &str, span: Range<usize>) -> Result<Vec<(String, Range<usize>)>, EditError> {
    let mut sc = Scanner {
        s: text.as_bytes(),
        i: span.start,
    };
    sc.ws();
    if sc.peek() != Some(b'{') {
        return Err(sc.err("expected an object"));
    }
    sc.i += 1;
    let mut out = Vec::new();
    loop {
        sc.ws();
        if sc.peek() == Some(b'}') {
            return Ok(out);
        }
        let k = sc.string()?;
        let key: String =
            serde_json::from_str(&text[k]).map_err(|e| EditError::Shape(format!("a key: {e}")))?;
        sc.ws();
        if sc.peek() != Some(b':') {
            return Err(sc.err("expected ':'"));
        }
        sc.i += 1;
        let v = sc.value()?;
        out.push((key, v));
        sc.ws();
        match sc.peek() {
            Some(b',') => sc.i += 1,
            Some(b'}') => return Ok(out),
            _ => return Err(sc.err("expected ',' or '}'")),
        }
    }
}

/// The items of the array at `span`.
fn items(text: &str, span: Range<usize>) -> Result<Vec<Range<usize>>, EditError> {
    let mut sc = Scanner {
        s: text.as_bytes(),
        i: span.start,
    };
    sc.ws();
    if sc.peek() != Some(b'[') {
        return Err(sc.err("expected an array"));
    }
    sc.i += 1;
    let mut out = Vec::new();
    loop {
        sc.ws();
        if sc.peek() == Some(b']') {
            return Ok(out);
        }
        out.push(sc.value()?);
        sc.ws();
        match sc.peek() {
            Some(b',') => sc.i += 1,
            Some(b']') => return Ok(out),
            _ => return Err(sc.err("expected ',' or ']'")),
        }
    }
}

/// Sets `key` of the `index`-th object of the top-level array `list` to the
/// string `value`: the old value's bytes are replaced, or the member is
/// appended to that object when it has none.
pub fn set_item_string(
    text: &str,
    list: &str,
    index: usize,
    key: &str,
    value: &str,
) -> Result<String, EditError> {
    let top = members(text, 0..text.len())?;
    // The last occurrence, as serde_json reads a repeated key.
    let (_, list_span) = top
        .iter()
        .rev()
        .find(|(k, _)| k == list)
        .ok_or_else(|| EditError::Shape(format!("no {list:?} key")))?;
    let objects = items(text, list_span.clone())?;
    let obj = objects
        .get(index)
        .ok_or_else(|| EditError::Shape(format!("{list}[{index}] does not exist")))?;
    let encoded = serde_json::Value::String(value.to_owned()).to_string();
    let fields = members(text, obj.clone())?;
    let mut out = String::with_capacity(text.len() + encoded.len() + key.len() + 8);
    if let Some((_, span)) = fields.iter().rev().find(|(k, _)| k == key) {
        out.push_str(&text[..span.start]);
        out.push_str(&encoded);
        out.push_str(&text[span.end..]);
    } else {
        let key = serde_json::Value::String(key.to_owned()).to_string();
        // Insert before the closing brace, after the last member.
        let close = obj.end - 1;
        let at = fields.last().map(|(_, v)| v.end).unwrap_or(close);
        out.push_str(&text[..at]);
        if fields.is_empty() {
            out.push_str(&format!("{key}: {encoded}"));
        } else {
            out.push_str(&format!(", {key}: {encoded}"));
        }
        out.push_str(&text[at..]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const CONFIG: &str = r#"{
  "device": "kiosk-7",
  "zz_unknown": {"nested": ["a", {"version": "not me"}]},
  "package": [
    {"package": "a", "version": "1.0", "x-note": "keep \"me\"", "sha256": "00"},
    {
      "package": "b",
      "version"  :  "2.0"
    },
    {}
  ],
  "after": 1
}"#;

    #[test]
    fn replaces_only_the_value() {
        let out = set_item_string(CONFIG, "package", 1, "version", "2.1").unwrap();
        assert_eq!(out, CONFIG.replace(r#""2.0""#, r#""2.1""#));
        let out = set_item_string(&out, "package", 0, "version", "1.\"1").unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["package"][0]["version"], "1.\"1");
        assert_eq!(v["package"][0]["x-note"], "keep \"me\"");
        assert_eq!(v["zz_unknown"]["nested"][1]["version"], "not me");
        // Key order is the text's order.
        let keys: Vec<_> = out.match_indices("\"after\"").collect();
        assert_eq!(keys.len(), 1);
        assert!(out.find("zz_unknown").unwrap() < out.find("\"package\"").unwrap());
    }

    #[test]
    fn appends_a_missing_member() {
        let out = set_item_string(CONFIG, "package", 1, "sha256", "ab").unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["package"][1]["sha256"], "ab");
        let out = set_item_string(CONFIG, "package", 2, "version", "3").unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["package"][2]["version"], "3");
    }

    #[test]
    fn a_repeated_list_key_edits_the_one_serde_reads() {
        let text = r#"{"package":[{"version":"1"}],"package":[{"version":"2"}]}"#;
        let out = set_item_string(text, "package", 0, "version", "3").unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["package"][0]["version"], "3");
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(set_item_string(CONFIG, "package", 3, "version", "1").is_err());
        assert!(set_item_string(CONFIG, "missing", 0, "version", "1").is_err());
        assert!(set_item_string(r#"{"package": 3}"#, "package", 0, "v", "1").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_value_round_trips(s in ".{0,40}", idx in 0usize..3) {
            let out = set_item_string(CONFIG, "package", idx, "version", &s).unwrap();
            let v: Value = serde_json::from_str(&out).unwrap();
            proptest::prop_assert_eq!(v["package"][idx]["version"].as_str(), Some(s.as_str()));
            proptest::prop_assert_eq!(&v["zz_unknown"], &serde_json::from_str::<Value>(CONFIG).unwrap()["zz_unknown"]);
        }
    }
}
