//! The update server: the package API (`/maxVersion`, `/getVersion`,
//! `/otafiles/<sha256>`, `PUT /update`), a JSON API under `/api/v1/`, and
//! resumable downloads, over an [`ota_store::Catalogue`] and
//! [`ota_store::BlobStore`].
//!
//! Hot answers (`/maxVersion`, `/getVersion`) come from [`cache::VersionCache`],
//! filled from the catalogue on a miss and dropped when a version is published
//! or deleted, here or by another server sharing the database (announced by
//! PostgreSQL notifications, [`sync`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let mut config = ota_server::ServerConfig::new(dir.path().join("data"));
//! config.listen = "127.0.0.1:0".parse()?; // any free port
//! let server = ota_server::Server::bind(config).await?;
//! println!("listening on http://{}", server.local_addr()?);
//! // Serve until the future resolves (here at once), then drain and stop.
//! server.run(async {}).await?;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api_v1;
pub mod bundle_protocol;
pub mod cache;
mod connections;
pub mod devices;
pub mod download;
pub mod error;
pub mod health;
pub mod legacy;
pub mod metrics;
pub mod multipart;
pub mod openapi;
pub mod packs;
pub mod render;
pub mod rom;
mod server;
pub mod state;
pub mod strategies;
pub mod sync;
pub mod upload;
pub mod watch;

pub use connections::ConnectionLimits;
pub use packs::PackConfig;
pub use render::DownloadBase;
pub use server::{shutdown_signal, Server, ServerConfig};
