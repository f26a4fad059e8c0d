//! Binding, routing, start-up recovery and graceful shutdown.

use crate::cache::VersionCache;
use crate::state::AppState;
use crate::upload::MULTIPART_OVERHEAD;
use crate::{api_v1, download, legacy};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::serve::ListenerExt;
use axum::Router;
use ota_store::{BlobStore, Catalogue, DataDirLock};
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
    /// Public base URL used to fill `remote`; `None` uses the `Host` header.
    pub public_url: Option<String>,
    /// How often to check whether another server changed the catalogue.
    pub generation_poll: Duration,
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
            generation_poll: Duration::from_secs(1),
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
    state: AppState,
    poll: Duration,
    _lock: DataDirLock,
}

impl Server {
    /// Locks the data directory, opens the catalogue (migrating it), clears
    /// what a crash left behind and binds the listening socket.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
        let blobs = BlobStore::open(&config.data_dir)
            .with_context(|| format!("opening blob store in {}", config.data_dir.display()))?;
        let lock = blobs.lock().context("locking the data directory")?;
        let catalogue = Catalogue::open(&config.database_url()).await?;
        let (tmp, orphans) = ota_store::recover(&catalogue, &blobs).await?;
        if tmp + orphans > 0 {
            tracing::info!(
                "recovery removed {tmp} unfinished upload(s) and {orphans} orphan blob(s)"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let state = AppState {
            catalogue,
            blobs,
            cache: Arc::new(VersionCache::default()),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            max_upload: config.max_upload,
            public_url: config.public_url,
        };
        Ok(Server {
            listener,
            state,
            poll: config.generation_poll,
            _lock: lock,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The router (for embedding the API in another server).
    pub fn router(state: AppState) -> Router {
        let upload_limit = DefaultBodyLimit::max(
            usize::try_from(state.max_upload.saturating_add(MULTIPART_OVERHEAD))
                .unwrap_or(usize::MAX),
        );
        let version_path = "/api/v1/packages/{package}/branches/{branch}/versions/{version}";
        Router::new()
            .route("/maxVersion", get(legacy::max_version))
            .route("/getVersion", get(legacy::get_version))
            .route("/update", put(legacy::update).layer(upload_limit))
            .route("/otafiles/{hash}", get(download::get_file))
            .route(
                "/api/v1/packages",
                get(api_v1::list_packages).merge(post(api_v1::upload).layer(upload_limit)),
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
            .route("/healthz", get(|| async { "ok\n" }))
            .with_state(state)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state.clone();
        let poller = tokio::spawn(poll_generation(state.clone(), self.poll));
        let app = Self::router(state.clone());
        // Small answers go out at once, as nginx's tcp_nodelay does.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        poller.abort();
        state.catalogue.close().await;
        result
    }
}

/// Drops cached answers when another server sharing the database writes.
async fn poll_generation(state: AppState, every: Duration) {
    let mut last = state.catalogue.generation().await.ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.catalogue.generation().await {
            Ok(g) if Some(g) != last => {
                state.cache.clear();
                last = Some(g);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("checking the catalogue generation: {e}"),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
