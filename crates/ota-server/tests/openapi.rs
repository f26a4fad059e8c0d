//! The OpenAPI document against the routes that exist: every route the
//! source registers is documented with its methods, and every documented
//! operation reaches a handler on a live server (none falls through to the
//! router's fallback, which `/metrics` counts as `unmatched`).

mod common;

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// (method, path) of every `.route(PATH, METHODS)` under `src/`, admin
/// pages aside (HTML, not part of the API).
fn routed() -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "admin") {
                continue;
            }
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, _) in text.match_indices(".route(") {
            let rest = &text[i + ".route(".len()..];
            // The call's text, to its closing parenthesis.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(j, _)| j)
                .unwrap();
            let call = &rest[..end];
            let Some(path) = call.split('"').nth(1) else {
                continue; // a route whose path is a variable
            };
            let path = match path {
                p if p.starts_with('/') => p.to_owned(),
                _ => continue,
            };
            for m in ["get", "post", "put", "delete"] {
                let hit = call.match_indices(&format!("{m}(")).any(|(k, _)| {
                    k == 0
                        || !call.as_bytes()[k - 1].is_ascii_alphanumeric()
                            && call.as_bytes()[k - 1] != b'_'
                });
                if hit {
                    found.insert((m.to_owned(), path.clone()));
                }
            }
        }
    }
    // The router's path variables use a variable for the versions path.
    found.insert((
        "get".into(),
        "/api/v1/packages/{package}/branches/{branch}/versions/{version}".into(),
    ));
    found.insert((
        "delete".into(),
        "/api/v1/packages/{package}/branches/{branch}/versions/{version}".into(),
    ));
    found
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert((method.clone(), path.clone()));
        }
    }
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_matches_the_routes() {
    let s = common::start().await;
    let doc: Value = reqwest::get(format!("{}/api/v1/openapi.json", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let ops = documented(&doc);
    let routes = routed();
    assert!(routes.len() > 30, "the source scan found {routes:?}");
    for (method, path) in &routes {
        let slash = format!("{path}/");
        let trimmed = path.trim_end_matches('/').to_owned();
        assert!(
            [path, &slash, &trimmed]
                .iter()
                .any(|p| ops.contains(&(method.clone(), (*p).clone()))),
            "{} {path} is routed but not documented",
            method.to_uppercase()
        );
    }
    // Every documented operation reaches a handler.
    let client = reqwest::Client::new();
    for (method, path) in &ops {
        let url = format!("{}{}", s.base, path.replace("{id}", "1"))
            .replace('{', "")
            .replace('}', "");
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        client.request(m, &url).send().await.unwrap();
    }
    let metrics = reqwest::get(format!("{}/metrics", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("route=\"unmatched\""),
        "a documented operation fell through to the fallback:\n{metrics}"
    );
    // Answers and request bodies are described by the handlers' types.
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "CmBuild",
        "LineageBuild",
        "BuildForm",
        "TargetFilesForm",
        "ErrorBody",
    ] {
        assert!(schemas.contains_key(name), "no schema {name}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    s.stop().await;
}
