//! The update strategies editor: the stored document in a text area,
//! checked by the same parser the API uses; a refusal shows the message and
//! marks the line it points at, and the previous document stays in force.

use super::{templates, PageResult, Session};
use crate::state::AppState;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::Extension;
use serde::Deserialize;

/// The line an error points at: a JSON syntax error names it (`line N
/// column M`); a semantic error names a JSON path (`[0].update[1].dest`),
/// whose line is found by walking the document.
pub fn error_line(body: &str, path: &str) -> Option<usize> {
    if let Some(rest) = path.strip_prefix("line ") {
        return rest.split_whitespace().next()?.parse().ok();
    }
    // Each segment is searched for after where the previous one was found:
    // an index by counting the array's elements, a key by its first quoted
    // occurrence (inside the element found, as keys are searched in order).
    let mut from = 0usize;
    let mut line = None;
    for seg in path_segments(path) {
        match seg {
            Seg::Key(k) => {
                let needle = format!("\"{k}\"");
                let at = body[from..].find(&needle)? + from;
                line = Some(body[..at].matches('\n').count() + 1);
                from = at + needle.len();
            }
            Seg::Index(i) => {
                // Skip to the i-th element of the array that starts here.
                let at = nth_element(body, from, i)?;
                line = Some(body[..at].matches('\n').count() + 1);
                from = at;
            }
        }
    }
    line
}

enum Seg {
    Key(String),
    Index(usize),
}

fn path_segments(path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else { break };
            if let Ok(i) = r[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &r[end + 1..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                out.push(Seg::Key(r[..end].to_owned()));
            }
            rest = &r[end..];
        }
    }
    out
}

/// The byte offset of the `i`-th element of the first array at or after
/// `from` (depth-aware, strings skipped).
fn nth_element(body: &str, from: usize, i: usize) -> Option<usize> {
    let bytes = body.as_bytes();
    let open = body[from..].find('[')? + from;
    let (mut depth, mut count, mut in_str, mut esc) = (0i32, 0usize, false, false);
    let mut p = open + 1;
    let mut start = None;
    while p < bytes.len() {
        let c = bytes[p];
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
            }
            p += 1;
            continue;
        }
        if !c.is_ascii_whitespace() && depth == 0 && start.is_none() {
            start = Some(p);
            if count == i {
                return Some(p);
            }
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth == 0 => return None,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => {
                count += 1;
                start = None;
            }
            _ => {}
        }
        p += 1;
    }
    None
}

async fn render(
    state: &AppState,
    s: &Session,
    status: StatusCode,
    body: Option<String>,
    message: &str,
    line: Option<usize>,
    saved: bool,
) -> PageResult {
    let stored = state.catalogue.strategies().await?;
    let body = body
        .or_else(|| stored.as_ref().map(|st| st.body.clone()))
        .unwrap_or_else(|| "[]".to_owned());
    let lines: Vec<&str> = body.lines().collect();
    let mut r = templates::page(
        s,
        "strategies.html",
        "strategies",
        minijinja::context! {
            body => body, lines => lines, message => message, error_line => line.unwrap_or(0),
            saved => saved,
            updated_by => stored.as_ref().map(|st| st.updated_by.clone()),
            updated_at => stored.as_ref().map(|st| st.updated_at),
        },
    )?;
    *r.status_mut() = status;
    Ok(r)
}

/// `GET /admin/strategies`.
pub async fn page(State(state): State<AppState>, Extension(s): Extension<Session>) -> PageResult {
    render(&state, &s, StatusCode::OK, None, "", None, false).await
}

/// The editor form.
#[derive(Deserialize)]
pub struct StrategiesForm {
    #[serde(default)]
    body: String,
}

/// `POST /admin/strategies`: checks and stores the document.
pub async fn save(
    State(state): State<AppState>,
    Extension(s): Extension<Session>,
    Form(f): Form<StrategiesForm>,
) -> PageResult {
    // Browsers send text areas with CRLF line ends.
    let body = f.body.replace("\r\n", "\n");
    if let Err(e) = ota_graph::strategy::Strategies::parse(&body) {
        let line = error_line(&body, &e.path);
        let message = match line {
            Some(n) => format!("line {n}: {e}"),
            None => e.to_string(),
        };
        return render(
            &state,
            &s,
            StatusCode::BAD_REQUEST,
            Some(body),
            &message,
            line,
            false,
        )
        .await;
    }
    if let Err(e) = crate::strategies::store(&state, body.as_bytes(), &s.actor()).await {
        return render(&state, &s, e.status, Some(body), &e.message, None, false).await;
    }
    // `strategies::store` writes the audit row (actor `user:NAME`).
    render(&state, &s, StatusCode::OK, None, "", None, true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_errors() {
        assert_eq!(error_line("[\n{", "line 2 column 1"), Some(2));
        let doc = "[\n  {\"name\": \"a\"},\n  {\"name\": \"b\",\n   \"update\": [\n     {\"dest\": 1},\n     {\"dest\": 2}\n   ]}\n]";
        assert_eq!(error_line(doc, "[1].update[1].dest"), Some(6));
        assert_eq!(error_line(doc, "[1].update"), Some(4));
        assert_eq!(error_line(doc, "[0]"), Some(2));
    }
}
