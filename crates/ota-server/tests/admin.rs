//! The web admin over real HTTP, on SQLite and PostgreSQL: sign-in,
//! sessions, CSRF, lock-out, escaping, oversize bodies, the audit log, and
//! pages without a session. Every bad input leaves nothing changed.

mod common;
use common::*;
use ota_store::{Catalogue, LockoutPolicy};
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::multipart::{Form, Part};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse battery";
const EVIL: &str = "<script>alert(1)</script>' OR 1=1; DROP TABLE devices; --";

/// A browser of sorts: keeps cookies by name, never follows redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Browser {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            if val.is_empty() || v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    async fn get(&mut self, path: &str) -> (u16, HeaderMap, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, HeaderMap, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        self.keep(&headers);
        (status, headers, r.text().await.unwrap())
    }

    async fn multipart(&mut self, path: &str, form: Form) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.text().await.unwrap())
    }

    /// Signs in; returns the status of the answer.
    async fn sign_in(&mut self, user: &str, password: &str) -> (u16, String) {
        let (_, _, page) = self.get("/admin/login").await;
        let token = hidden(&page, "csrf");
        let (status, _, body) = self
            .post(
                "/admin/login",
                &[("csrf", &token), ("user", user), ("password", password)],
            )
            .await;
        (status, body)
    }

    /// The CSRF token of the signed-in session (from any page's forms).
    async fn csrf(&mut self) -> String {
        let (status, _, page) = self.get("/admin/password").await;
        assert_eq!(status, 200, "{page}");
        hidden(&page, "csrf")
    }
}

/// The value of the first hidden input named `name`.
fn hidden(page: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&needle)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + needle.len();
    page[at..].split('"').next().unwrap().to_owned()
}

fn assert_security_headers(h: &HeaderMap, what: &str) {
    let csp = h
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no CSP"))
        .to_str()
        .unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{what}: {csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert_eq!(h.get("x-frame-options").unwrap(), "DENY", "{what}");
    assert_eq!(h.get("referrer-policy").unwrap(), "no-referrer", "{what}");
    assert_eq!(
        h.get("x-content-type-options").unwrap(),
        "nosniff",
        "{what}"
    );
}

fn quick_lockout() -> LockoutPolicy {
    LockoutPolicy {
        max_failures: 5,
        lockout: Duration::from_secs(3),
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(800),
    }
}

/// Starts a server on SQLite, or on a fresh PostgreSQL database, with a
/// user `alice`.
async fn start_admin(postgres: Option<String>) -> TestServer {
    let s = start_with(move |c| {
        c.database_url = postgres;
        c.admin.lockout = quick_lockout();
        c.max_upload = 4096;
    })
    .await;
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    assert!(cat.create_admin_user("alice", PASSWORD).await.unwrap());
    assert!(cat.create_admin_user("bob", PASSWORD).await.unwrap());
    cat.close().await;
    s
}

/// Runs a scenario on SQLite, then on PostgreSQL when one is configured.
macro_rules! both_backends {
    ($name:ident, $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            $scenario(start_admin(None).await).await;
            if let Some(url) = ota_store::testdb::fresh_postgres(stringify!($name))
                .await
                .unwrap()
            {
                $scenario(start_admin(Some(url)).await).await;
            }
        }
    };
}

const PAGES: &[&str] = &[
    "/admin",
    "/admin/keys",
    "/admin/users",
    "/admin/audit",
    "/admin/devices",
    "/admin/devices/kiosk-1",
    "/admin/rom",
    "/admin/rom/reports",
    "/admin/rom/oneplus3",
    "/admin/packages",
    "/admin/packages/org.example.app",
    "/admin/packages/org.example.app/main",
    "/admin/jobs",
    "/admin/strategies",
    "/admin/password",
];

async fn pages_need_a_session(s: TestServer) {
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    cat.add_device("kiosk-1", "secret-description-123")
        .await
        .unwrap();
    cat.close().await;
    let mut b = Browser::new(&s.base);
    for page in PAGES {
        let (status, h, body) = b.get(page).await;
        assert_eq!(status, 303, "{page}");
        assert_eq!(h.get(LOCATION).unwrap(), "/admin/login", "{page}");
        assert!(!body.contains("secret-description"), "{page}: {body}");
        assert_security_headers(&h, page);
    }
    // Paths that are not admin pages stay 404s, session or not.
    for path in ["/admin/no-such-page", "/no/such/page"] {
        let (status, _, _) = b.get(path).await;
        assert_eq!(status, 404, "{path}");
    }
    // Writes without a session are refused before any handler runs.
    for (path, form) in [
        ("/admin/keys", vec![("name", "sneaky"), ("scopes", "admin")]),
        ("/admin/devices/remove", vec![("name", "kiosk-1")]),
        (
            "/admin/users",
            vec![("name", "mallory"), ("password", PASSWORD)],
        ),
    ] {
        let (status, h, _) = b.post(path, &form).await;
        assert_eq!(status, 403, "{path}");
        assert_security_headers(&h, path);
    }
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    assert!(cat
        .list_keys()
        .await
        .unwrap()
        .iter()
        .all(|k| k.name != "sneaky"));
    assert!(cat.device("kiosk-1").await.unwrap().is_some());
    assert_eq!(cat.admin_users().await.unwrap().len(), 2);
    cat.close().await;
    // The sign-in page, the stylesheet and the script carry the headers too.
    for page in [
        "/admin/login",
        "/admin/static/admin.css",
        "/admin/static/admin.js",
    ] {
        let (status, h, _) = b.get(page).await;
        assert_eq!(status, 200, "{page}");
        assert_security_headers(&h, page);
    }
    // Signed in, every page renders.
    assert_eq!(b.sign_in("alice", PASSWORD).await.0, 303);
    for page in PAGES {
        let (status, h, body) = b.get(page).await;
        let expected = if page.ends_with("oneplus3") || page.ends_with("org.example.app") {
            404
        } else {
            200
        };
        assert_eq!(status, expected, "{page}: {body}");
        assert_security_headers(&h, page);
        assert!(
            !body.contains("style=") && !body.contains("onclick"),
            "{page}"
        );
    }
    s.stop().await;
}
both_backends!(
    pages_need_a_session_sqlite_and_postgres,
    pages_need_a_session
);

async fn sessions_and_csrf(s: TestServer) {
    let mut alice = Browser::new(&s.base);
    // A sign-in post without the form's token (or with another) is refused.
    let (status, _, _) = alice
        .post("/admin/login", &[("user", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = alice
        .post(
            "/admin/login",
            &[("csrf", "00"), ("user", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, 403);
    let (_, page) = alice.sign_in("alice", PASSWORD).await;
    assert!(page.is_empty() || !page.contains("error"));
    // The session cookie's attributes (plain http: no Secure).
    let (_, _, login) = alice.get("/admin/login").await;
    let token = hidden(&login, "csrf");
    let r = alice
        .http
        .post(format!("{}/admin/login", s.base))
        .header("cookie", alice.cookie_header())
        .form(&[
            ("csrf", token.as_str()),
            ("user", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let set: Vec<String> = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set.iter().find(|c| c.starts_with("ota_admin=")).unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Secure"), "{session}");
    alice.keep(r.headers());
    let csrf = alice.csrf().await;

    // No token, a wrong one, another session's: refused, nothing created.
    let mut bob = Browser::new(&s.base);
    bob.sign_in("bob", PASSWORD).await;
    let bobs = bob.csrf().await;
    assert_ne!(bobs, csrf);
    for form in [
        vec![("name", "k1"), ("scopes", "admin")],
        vec![("csrf", ""), ("name", "k1"), ("scopes", "admin")],
        vec![("csrf", "deadbeef"), ("name", "k1"), ("scopes", "admin")],
        vec![("csrf", bobs.as_str()), ("name", "k1"), ("scopes", "admin")],
    ] {
        let (status, _, body) = alice.post("/admin/keys", &form).await;
        assert_eq!(status, 403, "{form:?}: {body}");
    }
    // Multipart uploads carry the token in the query.
    let f = Form::new()
        .part("content", Part::text("{}"))
        .part("file", Part::bytes(b"x".to_vec()).file_name("x"));
    let (status, _) = alice.multipart("/admin/packages?csrf=beef", f).await;
    assert_eq!(status, 403);
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    assert!(cat
        .list_keys()
        .await
        .unwrap()
        .iter()
        .all(|k| k.name != "k1"));

    // The right token works; the token is shown once.
    let (status, _, body) = alice
        .post(
            "/admin/keys",
            &[("csrf", &csrf), ("name", "k1"), ("scopes", "admin")],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token_at = body.find("id=\"token\">").unwrap() + "id=\"token\">".len();
    let token = body[token_at..].split('<').next().unwrap().to_owned();
    assert!(cat.verify_key(&token).await.unwrap().is_some());
    let (_, _, again) = alice.get("/admin/keys").await;
    assert!(!again.contains(&token));

    // After sign-out the old cookie is worth nothing, on GET or POST.
    let old = alice.cookies.clone();
    let (status, h, _) = alice.post("/admin/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(h.get(LOCATION).unwrap(), "/admin/login");
    assert!(!alice.cookies.contains_key("ota_admin"));
    let mut thief = Browser::new(&s.base);
    thief.cookies = old;
    let (status, _, body) = thief.get("/admin/keys").await;
    assert_eq!(status, 303, "{body}");
    let (status, _, _) = thief
        .post(
            "/admin/keys",
            &[("csrf", &csrf), ("name", "k2"), ("scopes", "admin")],
        )
        .await;
    assert_eq!(status, 403);
    assert!(cat
        .list_keys()
        .await
        .unwrap()
        .iter()
        .all(|k| k.name != "k2"));
    // Bob's session is untouched by Alice's sign-out.
    assert_eq!(bob.get("/admin").await.0, 200);

    // Changing the password ends the user's other sessions, not this one.
    let mut alice2 = Browser::new(&s.base);
    alice2.sign_in("alice", PASSWORD).await;
    let mut alice3 = Browser::new(&s.base);
    alice3.sign_in("alice", PASSWORD).await;
    let c2 = alice2.csrf().await;
    let (status, _, body) = alice2
        .post(
            "/admin/password",
            &[
                ("csrf", &c2),
                ("current", "wrong"),
                ("new", "another long one"),
                ("again", "another long one"),
            ],
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = alice2
        .post(
            "/admin/password",
            &[
                ("csrf", &c2),
                ("current", PASSWORD),
                ("new", "short"),
                ("again", "short"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, _, body) = alice2
        .post(
            "/admin/password",
            &[
                ("csrf", &c2),
                ("current", PASSWORD),
                ("new", "another long one"),
                ("again", "another long one"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(alice2.get("/admin").await.0, 200);
    assert_eq!(alice3.get("/admin").await.0, 303);
    assert_eq!(
        Browser::new(&s.base).sign_in("alice", PASSWORD).await.0,
        401
    );
    assert_eq!(
        Browser::new(&s.base)
            .sign_in("alice", "another long one")
            .await
            .0,
        303
    );

    // The audit log names who did what.
    let log = cat.audit_log(100, None).await.unwrap();
    let has =
        |actor: &str, action: &str| log.iter().any(|e| e.actor == actor && e.action == action);
    assert!(has("user:alice", "key.create"));
    assert!(has("user:alice", "sign-out"));
    assert!(has("user:alice", "user.password"));
    assert!(has("user:bob", "sign-in"));
    cat.close().await;
    s.stop().await;
}
both_backends!(sessions_and_csrf_sqlite_and_postgres, sessions_and_csrf);

async fn lockout(s: TestServer) {
    let mut b = Browser::new(&s.base);
    let mut delays = Vec::new();
    for i in 0..10 {
        let t = Instant::now();
        let (status, body) = b.sign_in("alice", "wrong password").await;
        let took = t.elapsed();
        if i < 5 {
            assert_eq!(status, 401, "attempt {i}: {body}");
            assert!(body.contains("wrong user name or password"));
            delays.push(took);
        } else {
            assert_eq!(status, 429, "attempt {i}: {body}");
            assert!(body.contains("locked until"), "{body}");
        }
    }
    // The delay grows: at least 100, 200, 400, 800, 800 ms (on top of the
    // argon2 check, whose time depends on the machine's load).
    for (i, took) in delays.iter().enumerate() {
        let floor = quick_lockout().delay(i as u32 + 1);
        assert!(
            *took >= floor,
            "attempt {i}: {took:?} < {floor:?} ({delays:?})"
        );
    }
    assert_eq!(quick_lockout().delay(4), Duration::from_millis(800));
    // The right password is refused while locked…
    let (status, _) = b.sign_in("alice", PASSWORD).await;
    assert_eq!(status, 429);
    // …another user is not affected, an unknown one gets the same answer
    // as a wrong password…
    assert_eq!(Browser::new(&s.base).sign_in("bob", PASSWORD).await.0, 303);
    assert_eq!(
        Browser::new(&s.base).sign_in("nobody", PASSWORD).await.0,
        401
    );
    // …and works once the lock-out is over, clearing the count.
    tokio::time::sleep(quick_lockout().lockout + Duration::from_millis(200)).await;
    // A wrong guess after the lock-out starts the count again: one guess
    // does not lock the account for another period.
    let (status, body) = b.sign_in("alice", "not the password at all").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = b.sign_in("alice", PASSWORD).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(b.get("/admin").await.0, 200);
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    let users = cat.admin_users().await.unwrap();
    let alice = users.iter().find(|u| u.name == "alice").unwrap();
    assert_eq!(alice.failed_count, 0);
    assert_eq!(alice.locked_until_ms, None);
    cat.close().await;
    s.stop().await;
}
both_backends!(lockout_sqlite_and_postgres, lockout);

async fn hostile_text(s: TestServer) {
    let mut b = Browser::new(&s.base);
    b.sign_in("alice", PASSWORD).await;
    let csrf = b.csrf().await;
    // Markup and SQL in free text: stored verbatim, shown escaped.
    let (status, _, body) = b
        .post(
            "/admin/devices",
            &[("csrf", &csrf), ("name", "kiosk-1"), ("description", EVIL)],
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = b
        .post(
            "/admin/rom",
            &[
                ("csrf", &csrf),
                ("codename", "oneplus3"),
                ("name", EVIL),
                ("oem", EVIL),
            ],
        )
        .await;
    assert_eq!(status, 303, "{body}");
    // In names that have rules: refused, with the value escaped in the message.
    for (path, form) in [
        ("/admin/devices", vec![("name", EVIL), ("description", "x")]),
        ("/admin/keys", vec![("name", EVIL), ("scopes", "admin")]),
        ("/admin/keys", vec![("name", "ok"), ("scopes", EVIL)]),
        ("/admin/users", vec![("name", EVIL), ("password", PASSWORD)]),
        ("/admin/rom", vec![("codename", EVIL), ("name", "x")]),
        (
            "/admin/devices",
            vec![("name", "kiosk-2"), ("description", "bell\u{7}")],
        ),
    ] {
        let mut form = form.clone();
        form.push(("csrf", &csrf));
        let (status, _, body) = b.post(path, &form).await;
        assert_eq!(status, 400, "{path} {form:?}: {body}");
        assert!(!body.contains("<script>"), "{path}: {body}");
    }
    let mut strategies = String::from(EVIL);
    strategies.push('\n');
    let (status, _, body) = b
        .post(
            "/admin/strategies",
            &[("csrf", &csrf), ("body", &strategies)],
        )
        .await;
    assert_eq!(status, 400);
    assert!(!body.contains("<script>"), "{body}");
    assert!(body.contains("line 1"), "{body}");
    for page in [
        "/admin/devices",
        "/admin/devices/kiosk-1",
        "/admin/rom",
        "/admin/audit",
        "/admin",
    ] {
        let (status, _, body) = b.get(page).await;
        assert_eq!(status, 200, "{page}");
        assert!(!body.contains("<script>alert"), "{page}: {body}");
        if page != "/admin" {
            assert!(body.contains("&lt;script&gt;alert(1)"), "{page}: {body}");
        }
    }
    // The sign-in form shows a failed user name back: escaped too.
    let (status, body) = Browser::new(&s.base).sign_in(EVIL, "wrong").await;
    assert_eq!(status, 401);
    assert!(
        !body.contains("<script>") && body.contains("&lt;script&gt;"),
        "{body}"
    );
    // SQL and markup in a path: no such device, nothing else shown.
    let (status, _, body) = b.get("/admin/devices/x'%20OR%20'1'='1").await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("kiosk-1"), "{body}");
    let (status, _, body) = b
        .get("/admin/rom/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("<script>alert"), "{body}");
    // The SQL did nothing: the tables and rows are there, the text verbatim.
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    let d = cat.device("kiosk-1").await.unwrap().unwrap();
    assert_eq!(d.description, EVIL);
    assert_eq!(cat.devices().await.unwrap().len(), 1);
    assert_eq!(
        cat.rom_device("oneplus3").await.unwrap().unwrap().name,
        EVIL
    );
    assert_eq!(cat.admin_users().await.unwrap().len(), 2);
    cat.close().await;
    s.stop().await;
}
both_backends!(hostile_text_sqlite_and_postgres, hostile_text);

async fn oversize(s: TestServer) {
    let mut b = Browser::new(&s.base);
    b.sign_in("alice", PASSWORD).await;
    let csrf = b.csrf().await;
    // A form body past the limit is refused before any handler.
    let huge = "x".repeat(ota_server::admin::MAX_FORM_BYTES + 1);
    let (status, _, _) = b
        .post("/admin/strategies", &[("csrf", &csrf), ("body", &huge)])
        .await;
    assert_eq!(status, 413);
    // An upload past --max-upload (4096 here): refused, nothing stored.
    let file = vec![7u8; 10_000];
    let content = content("org.example.app", "main", "1.0.0", &file);
    let f = Form::new()
        .part("content", Part::text(content))
        .part("file", Part::bytes(file).file_name("app.bin"));
    let (status, body) = b
        .multipart(&format!("/admin/packages?csrf={csrf}"), f)
        .await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("limit"), "{body}");
    assert_eq!(s.tmp_count(), 0);
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    assert!(cat.packages().await.unwrap().is_empty());
    // A small one goes through the same path and is audited as the user.
    let file = b"small package".to_vec();
    let f = Form::new()
        .part("content", Part::text(content_of(&file)))
        .part("file", Part::bytes(file).file_name("app.bin"));
    let (status, body) = b
        .multipart(&format!("/admin/packages?csrf={csrf}"), f)
        .await;
    assert_eq!(status, 303, "{body}");
    let (status, _, page) = b.get("/admin/packages/org.example.app/main").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("1.0.0") && page.contains("version-graph"),
        "{page}"
    );
    let log = cat.audit_log(10, None).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.actor == "user:alice" && e.action == "package.publish"));
    cat.close().await;
    s.stop().await;
}
both_backends!(oversize_sqlite_and_postgres, oversize);

fn content_of(file: &[u8]) -> String {
    content("org.example.app", "main", "1.0.0", file)
}

/// A key revoked in the admin cannot publish; API writes are audited with
/// the key's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_key_cannot_publish_and_api_writes_are_audited() {
    let s = start_admin(None).await;
    let ci = s.key_with("ci", "publish:*").await;
    let file = b"v1".to_vec();
    let r = s
        .put_update_as(
            Some(&ci),
            &content("org.example.app", "main", "1.0.0", &file),
            &file,
        )
        .await;
    assert_eq!(r.status(), 200);
    let mut b = Browser::new(&s.base);
    b.sign_in("alice", PASSWORD).await;
    let csrf = b.csrf().await;
    let (status, _, _) = b
        .post("/admin/keys/revoke", &[("csrf", &csrf), ("name", "ci")])
        .await;
    assert_eq!(status, 303);
    let file = b"v2".to_vec();
    let r = s
        .put_update_as(
            Some(&ci),
            &content("org.example.app", "main", "1.0.1", &file),
            &file,
        )
        .await;
    assert_eq!(r.status(), 401);
    let (_, _, audit) = b.get("/admin/audit").await;
    assert!(
        audit.contains("key:ci") && audit.contains("package.publish"),
        "{audit}"
    );
    assert!(
        audit.contains("user:alice") && audit.contains("key.revoke"),
        "{audit}"
    );
    s.stop().await;
}

/// Behind a proxy that says https (trusted with --url-from-request), the
/// session cookie is `Secure`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_over_https() {
    let s = start_with(|c| c.url_from_request = true).await;
    let cat = Catalogue::open(&s.database_url).await.unwrap();
    cat.create_admin_user("alice", PASSWORD).await.unwrap();
    cat.close().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .get(format!("{}/admin/login", s.base))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let pre = r
        .headers()
        .get(SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(pre.ends_with("; Secure"), "{pre}");
    let token = hidden(&r.text().await.unwrap(), "csrf");
    let r = http
        .post(format!("{}/admin/login", s.base))
        .header("x-forwarded-proto", "https")
        .header("cookie", format!("ota_admin_login={token}"))
        .form(&[
            ("csrf", token.as_str()),
            ("user", "alice"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("ota_admin="))
        .unwrap();
    assert!(session.contains("; Secure"), "{session}");
    s.stop().await;
}
