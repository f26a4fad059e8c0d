//! The page templates (minijinja, compiled into the binary with
//! `include_str!`, every `.html` template auto-escaped), their filters, and
//! the static CSS and script.

use super::session::Session;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};
use std::sync::OnceLock;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("error.html", include_str!("templates/error.html")),
    ("login.html", include_str!("templates/login.html")),
    ("password.html", include_str!("templates/password.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("keys.html", include_str!("templates/keys.html")),
    ("users.html", include_str!("templates/users.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("devices.html", include_str!("templates/devices.html")),
    ("device.html", include_str!("templates/device.html")),
    (
        "rom_devices.html",
        include_str!("templates/rom_devices.html"),
    ),
    ("rom_builds.html", include_str!("templates/rom_builds.html")),
    (
        "rom_reports.html",
        include_str!("templates/rom_reports.html"),
    ),
    ("packages.html", include_str!("templates/packages.html")),
    ("package.html", include_str!("templates/package.html")),
    ("branch.html", include_str!("templates/branch.html")),
    ("jobs.html", include_str!("templates/jobs.html")),
    ("strategies.html", include_str!("templates/strategies.html")),
];

const CSS: &str = include_str!("static/admin.css");
const JS: &str = include_str!("static/admin.js");

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // Auto-escaping follows the name: every template here is `.html`.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        for (name, text) in TEMPLATES {
            if let Err(e) = env.add_template(name, text) {
                // A unit test loads every template; this only logs the
                // impossible case and leaves that one page failing.
                tracing::error!("admin template {name}: {e}");
            }
        }
        env.add_filter("time", time_filter);
        env.add_filter("bytes", bytes_filter);
        env
    })
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (empty for none).
pub fn format_time(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn time_filter(v: Value) -> String {
    match i64::try_from(v) {
        Ok(s) => format_time(s),
        Err(_) => String::new(),
    }
}

fn bytes_filter(v: Value) -> String {
    match u64::try_from(v) {
        Ok(n) => ota_core::size::describe(n),
        Err(_) => String::new(),
    }
}

/// Renders a template.
pub fn render(name: &str, ctx: Value) -> Result<String, minijinja::Error> {
    env().get_template(name)?.render(ctx)
}

/// Renders a signed-in page: the layout gets the user, the CSRF token
/// and the section for the navigation.
pub fn page(
    s: &Session,
    name: &str,
    section: &str,
    ctx: Value,
) -> Result<Response, super::AdminError> {
    let ctx = minijinja::context! {
        user => s.user, csrf => s.csrf, section => section, ..ctx
    };
    Ok(Html(render(name, ctx)?).into_response())
}

/// `GET /admin/static/admin.css`.
pub async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// `GET /admin/static/admin.js`.
pub async fn js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        JS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_loads() {
        let env = env();
        for (name, _) in TEMPLATES {
            env.get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn text_is_escaped() {
        let out = render(
            "error.html",
            minijinja::context! { status => 400, message => "<script>alert(1)</script>" },
        )
        .unwrap();
        assert!(!out.contains("<script>alert"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }

    #[test]
    fn dates() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(format_time(1_767_225_599), "2025-12-31 23:59 UTC");
    }
}
