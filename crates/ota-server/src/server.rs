//! Binding, routing, start-up recovery and graceful shutdown.

use crate::bundle_protocol::{self, bundles::BundleCache, RulesCache};
use crate::cache::VersionCache;
use crate::connections::{self, ConnectionLimits};
use crate::packs::{PackConfig, Packs};
use crate::render::DownloadBase;
use crate::state::AppState;
use crate::{api_v1, devices, download, legacy, strategies};
use anyhow::Context;
use axum::routing::{get, post, put};
use axum::Router;
use ota_store::{BlobBackend, BlobStore, Catalogue, DataDirLock};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a server is set up.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Data directory: blobs, temporary uploads, the embedded database.
    pub data_dir: PathBuf,
    /// Database URL; `None` means SQLite inside `data_dir`.
    pub database_url: Option<String>,
    /// Largest accepted package file, in bytes.
    pub max_upload: u64,
    /// Public base URL of download links (`remote`), e.g.
    /// `https://ota.example.com`. Without it: `http://LISTEN_ADDRESS`, or the
    /// request's `Host` when [`ServerConfig::url_from_request`] is set.
    pub public_url: Option<String>,
    /// Build download links from each request's `Host` / `X-Forwarded-*`
    /// headers when no public URL is set (only behind a proxy that sets them).
    pub url_from_request: bool,
    /// How often to check whether another server changed the catalogue
    /// (on PostgreSQL, notifications tell at once and this is a safety net
    /// of at least [`crate::sync::SAFETY_POLL`]).
    pub generation_poll: Duration,
    /// Connection cap and timeouts.
    pub limits: ConnectionLimits,
    /// A strategies file to check and store at start (`serve --strategy`).
    pub strategy_file: Option<PathBuf>,
    /// Pack building and signing.
    pub packs: PackConfig,
    /// Bytes of bundles kept on disk for repeated and resumed downloads.
    pub bundle_cache: u64,
    /// A directory whose new versions are published (`serve --watch`).
    pub watch: Option<PathBuf>,
    /// How often the watched directory is scanned.
    pub watch_interval: Duration,
    /// The web admin's settings.
    pub admin: crate::admin::AdminConfig,
    /// Where blobs are kept: the data directory, or an S3-compatible
    /// object store with the data directory as its cache (`--blobs`).
    pub blobs: BlobBackend,
    /// With an object store: answer blob downloads with a redirect to a
    /// presigned URL valid this long (`--blobs-presign`), instead of
    /// streaming them through the server.
    pub blobs_presign: Option<Duration>,
}

impl ServerConfig {
    /// Defaults: `127.0.0.1:8080`, `./ota-data`, SQLite, 8 GiB uploads.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: data_dir.into(),
            database_url: None,
            max_upload: 8 << 30,
            public_url: None,
            url_from_request: false,
            generation_poll: Duration::from_secs(1),
            limits: ConnectionLimits::default(),
            strategy_file: None,
            packs: PackConfig::default(),
            bundle_cache: 2 << 30,
            watch: None,
            watch_interval: Duration::from_secs(2),
            admin: crate::admin::AdminConfig::default(),
            blobs: BlobBackend::Local,
            blobs_presign: None,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| Catalogue::sqlite_url_for(&self.data_dir))
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    watch: Option<(PathBuf, Duration)>,
    state: AppState,
    poll: Duration,
    database_url: String,
    limits: ConnectionLimits,
    _lock: DataDirLock,
}

/// The download base for a server bound at `addr`.
fn download_base(config: &ServerConfig, addr: SocketAddr) -> anyhow::Result<DownloadBase> {
    if let Some(url) = &config.public_url {
        if config.url_from_request {
            anyhow::bail!(
                "--public-url and --url-from-request contradict each other: download URLs come \
                 either from the configured public URL or from each request's Host"
            );
        }
        return Ok(DownloadBase::fixed(url)?);
    }
    let own = format!("http://{addr}");
    if config.url_from_request {
        return Ok(DownloadBase::FromRequest { fallback: own });
    }
    if addr.ip().is_unspecified() {
        anyhow::bail!(
            "listening on {addr} without a public URL: devices would be sent to {own}, which \
             they cannot reach. Set --public-url https://your.host (or OTA_PUBLIC_URL), or \
             --url-from-request to build links from each request's Host header behind a proxy"
        );
    }
    Ok(DownloadBase::Fixed(own))
}

impl Server {
    /// Locks the data directory, opens the catalogue (migrating it), clears
    /// what a crash left behind and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        ota_store::create_private_dir(&config.data_dir)?;
        if config.blobs_presign.is_some() && config.blobs == BlobBackend::Local {
            anyhow::bail!(
                "--blobs-presign needs an object store (--blobs s3://…): local blobs have no \
                 presigned URLs"
            );
        }
        let blobs = BlobStore::open_with(&config.data_dir, &config.blobs)
            .with_context(|| format!("opening the blob store ({})", config.blobs))?;
        let lock = blobs.lock().context("locking the data directory")?;
        let catalogue = Catalogue::open(&config.database_url()).await?;
        // With an object store this lists the bucket: a wrong endpoint,
        // bucket or key fails here, at start, with the store's answer.
        let (tmp, orphans) = ota_store::recover(&catalogue, &blobs)
            .await
            .with_context(|| format!("start-up cleanup of the blob store ({})", config.blobs))?;
        tracing::info!("blobs: {}", blobs.describe());
        if tmp + orphans > 0 {
            tracing::info!(
                "recovery removed {tmp} unfinished upload(s) and {orphans} orphan blob(s)"
            );
        }
        let listener = connections::listen(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let packs = Packs::new(config.packs.clone(), &config.data_dir, &catalogue).await?;
        let bundles = BundleCache::new(config.data_dir.join("bundles"), config.bundle_cache)?;
        let state = AppState {
            catalogue,
            blobs,
            cache: Arc::new(VersionCache::default()),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            packages_load: Arc::new(tokio::sync::Mutex::new(())),
            max_upload: config.max_upload,
            download_base: Arc::new(download_base(&config, addr)?),
            body_stall: config.limits.stall_timeout,
            packs,
            bundles: Arc::new(bundles),
            rules: Arc::new(RulesCache::default()),
            rom: Arc::new(crate::rom::cache::RomCache::default()),
            metrics: Arc::new(crate::metrics::Metrics::new(addr.to_string())),
            admin: Arc::new(config.admin),
            presign: config.blobs_presign,
        };
        let queued = state.packs.reconcile(&state.catalogue).await?;
        if queued > 0 {
            tracing::info!("queued {queued} pack job(s) for versions the delta map lacked");
        }
        if let Some(path) = &config.strategy_file {
            let body = std::fs::read(path)
                .with_context(|| format!("reading strategies {}", path.display()))?;
            crate::strategies::store(&state, &body, "serve --strategy")
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
        }
        if let Some(w) = &config.watch {
            anyhow::ensure!(w.is_dir(), "--watch {}: not a directory", w.display());
        }
        Ok(Server {
            listener,
            watch: config.watch.clone().map(|w| (w, config.watch_interval)),
            state,
            poll: config.generation_poll,
            database_url: config.database_url(),
            limits: config.limits,
            _lock: lock,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The router (for embedding the API in another server).
    pub fn router(state: AppState) -> Router {
        let per_request = matches!(*state.download_base, DownloadBase::FromRequest { .. });
        // Upload bodies are bounded by the multipart parser's limits and
        // `max_upload`, checked as they stream (`upload`).
        let version_path = "/api/v1/packages/{package}/branches/{branch}/versions/{version}";
        let router = Router::new()
            .route("/maxVersion", get(legacy::max_version))
            .route("/getVersion", get(legacy::get_version))
            .route("/update", put(legacy::update))
            .route("/otafiles/{hash}", get(download::get_file))
            .route(
                "/api/v1/packages",
                get(api_v1::list_packages).merge(post(api_v1::upload)),
            )
            .route("/api/v1/packages/{package}", get(api_v1::get_package))
            .route(
                "/api/v1/packages/{package}/branches/{branch}/versions",
                get(api_v1::list_versions),
            )
            .route(
                "/api/v1/packages/{package}/branches/{branch}/latest",
                get(api_v1::latest),
            )
            .route(
                version_path,
                get(api_v1::get_version).delete(api_v1::delete_version),
            )
            .route("/api/v1/auth", get(api_v1::auth))
            .route(
                "/api/v1/strategies",
                get(strategies::get).put(strategies::put),
            )
            .route("/api/v1/jobs", get(api_v1::list_jobs))
            .route("/api/v1/jobs/{id}/retry", post(api_v1::retry_job))
            .route(
                "/api/v1/packages/{package}/branches/{branch}/deltas",
                get(api_v1::delta_map),
            )
            .route("/api/v1/update/request", post(bundle_protocol::request))
            .route("/api/v1/update/confirm", post(bundle_protocol::confirm))
            .route(
                "/api/v1/update/bundles/{name}",
                get(bundle_protocol::get_bundle),
            )
            .route("/api/v1/signing-key", get(bundle_protocol::signing_key))
            .route("/api/v1/devices", get(devices::list).post(devices::add))
            .route(
                "/api/v1/devices/{device}",
                get(devices::show).delete(devices::remove),
            )
            .route("/api/v1/devices/{device}/report", post(devices::report))
            .route("/healthz", get(crate::health::healthz))
            .route("/readyz", get(crate::health::readyz))
            .route("/metrics", get(crate::metrics::serve))
            .route("/api/v1/openapi.json", get(crate::openapi::serve))
            .merge(crate::rom::routes())
            .merge(crate::admin::router(&state))
            .layer(axum::middleware::from_fn_with_state(
                state.metrics.clone(),
                crate::metrics::track,
            ))
            // Files publishers uploaded are served from this origin: a
            // browser must never run one as a script or page.
            .layer(
                tower_http::set_header::SetResponseHeaderLayer::if_not_present(
                    axum::http::header::X_CONTENT_TYPE_OPTIONS,
                    axum::http::HeaderValue::from_static("nosniff"),
                ),
            )
            .with_state(state);
        if per_request {
            // Answers differ by Host: caches in front must not share them.
            router.layer(axum::middleware::map_response(
                |mut r: axum::response::Response| async move {
                    r.headers_mut().insert(
                        axum::http::header::VARY,
                        axum::http::HeaderValue::from_static(
                            "Host, X-Forwarded-Host, X-Forwarded-Proto",
                        ),
                    );
                    r
                },
            ))
        } else {
            router
        }
    }

    /// The state handlers share (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes; then stops accepting at once and
    /// lets in-flight requests finish up to the drain deadline.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let mut background = Vec::new();
        if state.catalogue.is_postgres() {
            background.push(tokio::spawn(crate::sync::listen(
                state.clone(),
                self.database_url.clone(),
            )));
        }
        let poll = if state.catalogue.is_postgres() {
            self.poll.max(crate::sync::SAFETY_POLL)
        } else {
            self.poll
        };
        background.push(tokio::spawn(crate::sync::poll_generation(
            state.clone(),
            poll,
        )));
        background.push(tokio::spawn(crate::metrics::store_downloads(
            state.clone(),
            Duration::from_secs(60),
        )));
        if let Some(grace) = state.blobs.orphan_grace() {
            background.push(tokio::spawn(collect_orphans(state.clone(), grace)));
        }
        let mut workers = crate::packs::runner::spawn(&state, &state.packs);
        if let Some((dir, every)) = self.watch.clone() {
            tracing::info!("publishing new versions found under {}", dir.display());
            workers.push(tokio::spawn(crate::watch::run(state.clone(), dir, every)));
        }
        let app = Self::router(state.clone());
        if let Ok(addr) = self.listener.local_addr() {
            let base = match state.download_base.as_ref() {
                DownloadBase::Fixed(b) => b.clone(),
                DownloadBase::FromRequest { .. } => "PROTO://HOST (from each request)".to_owned(),
            };
            tracing::info!("serving on {addr}; download URLs: {base}/otafiles/<sha256>");
        }
        connections::raise_file_limit(self.limits.max_connections);
        connections::serve(self.listener, app, self.limits, shutdown).await;
        for task in background {
            task.abort();
        }
        crate::metrics::flush_downloads(&state).await;
        // A job cut here is taken over when its lease runs out.
        for w in workers {
            w.abort();
        }
        state.catalogue.close().await;
        Ok(())
    }
}

/// With an object store: deletes objects no row references once they are
/// older than the grace period (a deleted version's blob, an upload whose
/// row was never written), every quarter of the grace period (between a
/// minute and an hour). Start-up cleanup does the same at start.
async fn collect_orphans(state: AppState, grace: Duration) {
    let every = (grace / 4).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    loop {
        tokio::time::sleep(every).await;
        match ota_store::collect_orphans(&state.catalogue, &state.blobs).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} unreferenced object(s) from the object store"),
            Err(e) => tracing::warn!("collecting unreferenced objects: {e}"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives
/// between start-up and serving still stops the server gracefully instead
/// of killing it. Call it before announcing the server.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let int = signal(SignalKind::interrupt());
    let term = signal(SignalKind::terminate());
    async move {
        let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
            match s {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = wait(int) => {}, _ = wait(term) => {} }
    }
}
