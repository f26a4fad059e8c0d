//! `GET /metrics`: Prometheus text format, per instance.
//!
//! Requests are counted by method, route (the pattern that matched, so a
//! flood of distinct URLs cannot grow the label set) and status, with a
//! latency histogram to the response head; bytes are what responses
//! declared (`Content-Length`), uploads what upload routes received. Gauges
//! that live elsewhere (job queue by state, hot-cache hits and misses) are
//! read when scraped. The hot path takes no lock once a route's series
//! exist: a read lock and a few relaxed atomic adds.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Routes whose request bodies are uploads.
const UPLOAD_ROUTES: [(&str, &str); 4] = [
    ("POST", "/api/v1/packages"),
    ("PUT", "/update"),
    ("POST", "/api/v1/builds"),
    ("POST", "/api/v1/builds/target-files"),
];

/// Routes that serve downloads, and the kind each counts as.
const DOWNLOAD_ROUTES: [(&str, &str); 4] = [
    ("/otafiles/{hash}", "package"),
    ("/rom/{hash}/{filename}", "rom"),
    ("/api/v1/update/bundles/{name}", "bundle"),
    ("/api/v1/update/confirm", "bundle"),
];

/// Downloads per (day, kind): (count, bytes).
type DownloadTally = HashMap<(i64, &'static str), (i64, i64)>;

/// Series of one (method, route).
#[derive(Default)]
struct RouteSeries {
    /// Requests by status code.
    statuses: RwLock<HashMap<u16, Arc<AtomicU64>>>,
    /// Cumulative-at-scrape histogram: counts per bucket (+Inf last).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of latencies, in microseconds.
    sum_micros: AtomicU64,
    /// Bytes responses declared.
    bytes_out: AtomicU64,
}

/// The server's counters.
pub struct Metrics {
    routes: RwLock<HashMap<(Method, String), Arc<RouteSeries>>>,
    uploads: [AtomicU64; 2],
    upload_bytes: AtomicU64,
    /// Downloads not yet added to the catalogue: (day, kind) → (count, bytes).
    downloads: std::sync::Mutex<DownloadTally>,
    started: Instant,
    instance: String,
}

impl Metrics {
    /// Counters for the instance named `instance` (host:port).
    pub fn new(instance: String) -> Self {
        Metrics {
            routes: RwLock::new(HashMap::new()),
            uploads: Default::default(),
            upload_bytes: AtomicU64::new(0),
            downloads: std::sync::Mutex::new(HashMap::new()),
            started: Instant::now(),
            instance,
        }
    }

    fn series(&self, method: &Method, route: &str) -> Arc<RouteSeries> {
        {
            let map = self.routes.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map.get(&(method.clone(), route.to_owned())) {
                return s.clone();
            }
        }
        let mut map = self.routes.write().unwrap_or_else(|p| p.into_inner());
        map.entry((method.clone(), route.to_owned()))
            .or_default()
            .clone()
    }

    fn record(&self, method: &Method, route: &str, status: StatusCode, secs: f64, bytes: u64) {
        let s = self.series(method, route);
        let counter = {
            let map = s.statuses.read().unwrap_or_else(|p| p.into_inner());
            map.get(&status.as_u16()).cloned()
        };
        let counter = counter.unwrap_or_else(|| {
            let mut map = s.statuses.write().unwrap_or_else(|p| p.into_inner());
            map.entry(status.as_u16()).or_default().clone()
        });
        counter.fetch_add(1, Ordering::Relaxed);
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[i].fetch_add(1, Ordering::Relaxed);
        s.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
        s.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a download started (a whole file, or a range from byte 0).
    fn count_download(&self, kind: &'static str, bytes: u64) {
        let day = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64 / 86_400);
        let mut map = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry((day, kind)).or_insert((0, 0));
        e.0 += 1;
        e.1 += i64::try_from(bytes).unwrap_or(i64::MAX);
    }

    /// Takes the downloads counted since the last call.
    pub fn take_downloads(&self) -> Vec<ota_store::DownloadCount> {
        let map = std::mem::take(&mut *self.downloads.lock().unwrap_or_else(|p| p.into_inner()));
        map.into_iter()
            .map(
                |((day, kind), (downloads, bytes))| ota_store::DownloadCount {
                    day,
                    kind: kind.to_owned(),
                    downloads,
                    bytes,
                },
            )
            .collect()
    }

    /// Gives back counts that could not be stored, to try again later.
    fn restore_downloads(&self, counts: Vec<ota_store::DownloadCount>) {
        let mut map = self.downloads.lock().unwrap_or_else(|p| p.into_inner());
        for c in counts {
            let kind = DOWNLOAD_ROUTES
                .iter()
                .map(|(_, k)| *k)
                .find(|k| *k == c.kind)
                .unwrap_or("package");
            let e = map.entry((c.day, kind)).or_insert((0, 0));
            e.0 += c.downloads;
            e.1 += c.bytes;
        }
    }

    /// The text exposition of every series, plus the gauges given.
    fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8192);
        let _ = writeln!(
            out,
            "# HELP ota_instance_info The instance these series come from.\n\
             # TYPE ota_instance_info gauge\n\
             ota_instance_info{{instance=\"{}\",version=\"{}\"}} 1",
            escape(&self.instance),
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            out,
            "# HELP ota_uptime_seconds Seconds since the server started.\n\
             # TYPE ota_uptime_seconds gauge\nota_uptime_seconds {:.3}",
            self.started.elapsed().as_secs_f64()
        );
        let routes: Vec<((Method, String), Arc<RouteSeries>)> = {
            let map = self.routes.read().unwrap_or_else(|p| p.into_inner());
            let mut v: Vec<_> = map.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
            v.sort_by(|a, b| {
                (a.0 .1.as_str(), a.0 .0.as_str()).cmp(&(b.0 .1.as_str(), b.0 .0.as_str()))
            });
            v
        };
        out.push_str(
            "# HELP ota_http_requests_total Requests answered, by method, route and status.\n\
             # TYPE ota_http_requests_total counter\n",
        );
        for ((method, route), s) in &routes {
            let mut statuses: Vec<(u16, u64)> = s
                .statuses
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
                .collect();
            statuses.sort_unstable();
            for (status, n) in statuses {
                let _ = writeln!(
                    out,
                    "ota_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP ota_http_request_duration_seconds Time to the response head.\n\
             # TYPE ota_http_request_duration_seconds histogram\n",
        );
        for ((method, route), s) in &routes {
            let labels = format!("method=\"{method}\",route=\"{}\"", escape(route));
            let mut cumulative = 0;
            for (i, bound) in BUCKETS
                .iter()
                .map(|b| b.to_string())
                .chain(["+Inf".to_owned()])
                .enumerate()
            {
                cumulative += s.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "ota_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "ota_http_request_duration_seconds_sum{{{labels}}} {sum}"
            );
            let _ = writeln!(
                out,
                "ota_http_request_duration_seconds_count{{{labels}}} {cumulative}"
            );
        }
        out.push_str(
            "# HELP ota_http_response_bytes_total Bytes responses declared (Content-Length).\n\
             # TYPE ota_http_response_bytes_total counter\n",
        );
        for ((method, route), s) in &routes {
            let _ = writeln!(
                out,
                "ota_http_response_bytes_total{{method=\"{method}\",route=\"{}\"}} {}",
                escape(route),
                s.bytes_out.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ota_uploads_total Upload requests, by result.\n\
             # TYPE ota_uploads_total counter\n\
             ota_uploads_total{{result=\"stored\"}} {}\n\
             ota_uploads_total{{result=\"refused\"}} {}\n\
             # HELP ota_upload_bytes_total Bytes upload requests declared.\n\
             # TYPE ota_upload_bytes_total counter\n\
             ota_upload_bytes_total {}",
            self.uploads[0].load(Ordering::Relaxed),
            self.uploads[1].load(Ordering::Relaxed),
            self.upload_bytes.load(Ordering::Relaxed),
        );
        gauges.render(&mut out);
        out
    }
}

/// Values read from the rest of the server when scraped.
struct Gauges {
    jobs: Vec<(String, String, i64)>,
    cache_hits: u64,
    cache_misses: u64,
}

impl Gauges {
    fn render(&self, out: &mut String) {
        out.push_str(
            "# HELP ota_jobs Jobs in the shared queue, by kind and state.\n\
             # TYPE ota_jobs gauge\n",
        );
        for (kind, state, n) in &self.jobs {
            let _ = writeln!(
                out,
                "ota_jobs{{kind=\"{}\",state=\"{}\"}} {n}",
                escape(kind),
                escape(state)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ota_cache_lookups_total Hot-cache lookups of branch answers, by result.\n\
             # TYPE ota_cache_lookups_total counter\n\
             ota_cache_lookups_total{{result=\"hit\"}} {}\n\
             ota_cache_lookups_total{{result=\"miss\"}} {}",
            self.cache_hits, self.cache_misses
        );
    }
}

/// Escapes a label value.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The method as a label: the standard ones, every other as `OTHER` (a
/// client may send any token as a method; each must not grow a series).
fn method_label(m: &Method) -> Method {
    match *m {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS
        | Method::PATCH => m.clone(),
        _ => Method::from_bytes(b"OTHER").unwrap_or(Method::GET),
    }
}

/// The middleware that records every request.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let upload = UPLOAD_ROUTES
        .iter()
        .any(|(m, r)| method.as_str() == *m && route == *r);
    if upload {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        metrics.upload_bytes.fetch_add(declared, Ordering::Relaxed);
    }
    let from_start = req
        .headers()
        .get(header::RANGE)
        .is_none_or(|r| r.to_str().is_ok_and(|r| r.trim().starts_with("bytes=0-")));
    let download = DOWNLOAD_ROUTES
        .iter()
        .find(|(r, _)| route == *r)
        .map(|(_, kind)| *kind);
    let response = next.run(req).await;
    let status = response.status();
    if upload {
        let i = usize::from(!status.is_success());
        metrics.uploads[i].fetch_add(1, Ordering::Relaxed);
    }
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    metrics.record(
        &method,
        &route,
        status,
        started.elapsed().as_secs_f64(),
        bytes,
    );
    if let Some(kind) = download.filter(|_| from_start && status.is_success()) {
        metrics.count_download(kind, bytes);
    }
    response
}

/// Adds the downloads counted here to the catalogue every `every`, until
/// the runtime stops (a failed write keeps the counts for the next try).
pub async fn store_downloads(state: AppState, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        flush_downloads(&state).await;
    }
}

/// Stores the downloads counted since the last flush.
pub async fn flush_downloads(state: &AppState) {
    let counts = state.metrics.take_downloads();
    if counts.is_empty() {
        return;
    }
    if let Err(e) = state.catalogue.add_download_counts(&counts).await {
        tracing::warn!("storing download counts: {e}");
        state.metrics.restore_downloads(counts);
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain; version=0.0.4"))
)]
pub async fn serve(State(state): State<AppState>) -> Response {
    let jobs = match state.catalogue.job_counts().await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!("reading job counts for /metrics: {e}");
            Vec::new()
        }
    };
    let (cache_hits, cache_misses) = state.cache.lookups();
    let gauges = Gauges {
        jobs,
        cache_hits,
        cache_misses,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_other_method_shares_one_series() {
        for m in ["FOO1", "FOO2", "PROPFIND"] {
            let m = Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(method_label(&m).as_str(), "OTHER");
        }
        assert_eq!(method_label(&Method::GET), Method::GET);
    }

    #[test]
    fn renders_counters_and_a_cumulative_histogram() {
        let m = Metrics::new("a:1".into());
        m.record(&Method::GET, "/maxVersion", StatusCode::OK, 0.0001, 10);
        m.record(&Method::GET, "/maxVersion", StatusCode::OK, 0.003, 10);
        m.record(&Method::GET, "/maxVersion", StatusCode::NOT_FOUND, 20.0, 0);
        m.record(&Method::GET, "/x\"y", StatusCode::OK, 0.0, 0);
        let text = m.render(&Gauges {
            jobs: vec![("pack".into(), "queued".into(), 3)],
            cache_hits: 5,
            cache_misses: 2,
        });
        for line in [
            "ota_http_requests_total{method=\"GET\",route=\"/maxVersion\",status=\"200\"} 2",
            "ota_http_requests_total{method=\"GET\",route=\"/maxVersion\",status=\"404\"} 1",
            "ota_http_request_duration_seconds_bucket{method=\"GET\",route=\"/maxVersion\",le=\"0.0005\"} 1",
            "ota_http_request_duration_seconds_bucket{method=\"GET\",route=\"/maxVersion\",le=\"0.005\"} 2",
            "ota_http_request_duration_seconds_bucket{method=\"GET\",route=\"/maxVersion\",le=\"10\"} 2",
            "ota_http_request_duration_seconds_bucket{method=\"GET\",route=\"/maxVersion\",le=\"+Inf\"} 3",
            "ota_http_request_duration_seconds_count{method=\"GET\",route=\"/maxVersion\"} 3",
            "ota_http_response_bytes_total{method=\"GET\",route=\"/maxVersion\"} 20",
            "route=\"/x\\\"y\"",
            "ota_jobs{kind=\"pack\",state=\"queued\"} 3",
            "ota_cache_lookups_total{result=\"hit\"} 5",
            "ota_instance_info{instance=\"a:1\"",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
