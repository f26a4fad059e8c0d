//! The update strategies over HTTP: set, read, refused with the JSON path,
//! the previous document kept, and loaded at start.

mod common;
use common::*;

const GOOD: &str = r#"[{"name":"app demo","update":[{"strategy":"optional",
  "condition":{"version":{"compare":"<","value":"0.0.5"}},"dest":"0.0.5"}]}]"#;

async fn put(s: &TestServer, key: Option<&str>, body: &str) -> reqwest::Response {
    let mut r = client()
        .put(format!("{}/api/v1/strategies", s.base))
        .body(body.to_owned());
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    r.send().await.unwrap()
}

async fn get(s: &TestServer, key: &str) -> reqwest::Response {
    client()
        .get(format!("{}/api/v1/strategies", s.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn strategies_are_checked_stored_and_shared() {
    let s = start().await;
    assert_eq!(get(&s, &s.key).await.status(), 404);
    assert_eq!(put(&s, Some(&s.key), GOOD).await.status(), 204);
    let r = get(&s, &s.key).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), GOOD);
    // A mistake is refused with where it is, and the rules in force stay.
    let bad = GOOD.replace(r#""<""#, r#""~""#);
    let r = put(&s, Some(&s.key), &bad).await;
    assert_eq!(r.status(), 400);
    let j: serde_json::Value = r.json().await.unwrap();
    let msg = j["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[0].update[0].condition.version.compare"),
        "{msg}"
    );
    assert_eq!(get(&s, &s.key).await.text().await.unwrap(), GOOD);
    // Only admin keys change them; any key reads them.
    let publisher = s.key_with("pub", "publish:*").await;
    assert_eq!(put(&s, Some(&publisher), "[]").await.status(), 403);
    assert_eq!(put(&s, None, "[]").await.status(), 401);
    assert_eq!(get(&s, &publisher).await.status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn serve_strategy_file_is_loaded_or_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("strategies.json");
    std::fs::write(
        &file,
        r#"[{"name":"x","rollback":[{"strategy":"sometimes","dest":"1"}]}]"#,
    )
    .unwrap();
    let mut c = ota_server::ServerConfig::new(dir.path().join("data"));
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.strategy_file = Some(file.clone());
    let err = ota_server::Server::bind(c.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("[0].rollback[0].strategy"),
        "{err}"
    );
    std::fs::write(&file, GOOD).unwrap();
    let server = ota_server::Server::bind(c).await.unwrap();
    let stored = server
        .state()
        .catalogue
        .strategies()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body, GOOD);
    assert_eq!(stored.updated_by, "serve --strategy");
}
