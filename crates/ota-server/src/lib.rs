//! The update server: the seed 003 package API (`/maxVersion`, `/getVersion`,
//! `/otafiles/<sha256>`, `PUT /update`), a JSON API under `/api/v1/`, and
//! resumable downloads, over an [`ota_store::Catalogue`] and
//! [`ota_store::BlobStore`].
//!
//! Hot answers (`/maxVersion`, `/getVersion`) come from [`cache::VersionCache`],
//! filled from the catalogue on a miss and dropped when a version is published
//! or deleted, here or (through the catalogue generation) by another server
//! sharing the database.

pub mod api_v1;
pub mod cache;
mod connections;
pub mod download;
pub mod error;
pub mod legacy;
pub mod multipart;
pub mod render;
mod server;
pub mod state;
pub mod upload;

pub use connections::ConnectionLimits;
pub use render::DownloadBase;
pub use server::{shutdown_signal, Server, ServerConfig};
