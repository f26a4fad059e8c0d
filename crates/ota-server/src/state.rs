//! Shared server state and the operations handlers build on.

use crate::cache::{BranchView, VersionCache};
use crate::error::ApiError;
use crate::render::DownloadBase;
use axum::http::HeaderMap;
use ota_core::name::check_name;
use ota_store::{BlobStore, Catalogue, KeyAuth, PackageSummary};
use std::sync::Arc;
use std::time::Duration;

/// Everything a handler needs; cloned per request (cheap: `Arc`s inside).
#[derive(Clone)]
pub struct AppState {
    /// The catalogue.
    pub catalogue: Catalogue,
    /// The blob store.
    pub blobs: BlobStore,
    /// Hot answers.
    pub cache: Arc<VersionCache>,
    /// Serialises "store blob + write row" and "delete row + remove blob" so a
    /// delete never removes a blob a concurrent publish is about to reference.
    pub write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Serialises loads of the package list.
    pub packages_load: Arc<tokio::sync::Mutex<()>>,
    /// Largest accepted package file, in bytes.
    pub max_upload: u64,
    /// How `remote` download URLs are built when answering.
    pub download_base: Arc<DownloadBase>,
    /// An upload whose body moves no byte for this long is refused.
    pub body_stall: Duration,
    /// Delta maps, pack jobs and the signing key.
    pub packs: Arc<crate::packs::Packs>,
    /// Bundles of the bundle protocol, built from stored packs.
    pub bundles: Arc<crate::bundle_protocol::bundles::BundleCache>,
    /// The update strategies in force, parsed.
    pub rules: Arc<crate::bundle_protocol::RulesCache>,
    /// Hot ROM build lists (valid for one epoch of `cache`).
    pub rom: Arc<crate::rom::cache::RomCache>,
    /// Request counters for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Web admin settings (sign-in lock-out).
    pub admin: Arc<crate::admin::AdminConfig>,
    /// Blob downloads redirect to presigned object-store URLs valid this
    /// long (`--blobs-presign`).
    pub presign: Option<Duration>,
}

impl AppState {
    /// The view of one package branch, from the cache or the catalogue.
    pub async fn branch_view(
        &self,
        package: &str,
        branch: &str,
    ) -> Result<Arc<BranchView>, ApiError> {
        let (cached, epoch) = self.cache.get(package, branch);
        if let Some(view) = cached {
            return Ok(view);
        }
        // A name the catalogue does not hold is answered from the package
        // list in memory: a flood of unknown names never reaches the database.
        if !self.branch_exists(package, branch).await? {
            return Ok(Arc::new(BranchView::default()));
        }
        let entries = self.catalogue.versions(package, branch).await?;
        let view = Arc::new(BranchView::from_sorted(
            entries,
            &self.download_base,
            &self.packs.key,
        ));
        self.cache.insert(package, branch, epoch, view.clone());
        Ok(view)
    }

    /// Every package with its branches, from the cache or the catalogue.
    pub async fn packages(&self) -> Result<Arc<Vec<PackageSummary>>, ApiError> {
        if let (Some(p), _) = self.cache.packages() {
            return Ok(p);
        }
        // One load at a time: a burst of misses waits for it instead of
        // sending the same query many times.
        let _loading = self.packages_load.lock().await;
        let (cached, epoch) = self.cache.packages();
        if let Some(p) = cached {
            return Ok(p);
        }
        let list = Arc::new(self.catalogue.packages().await?);
        self.cache.set_packages(epoch, list.clone());
        Ok(list)
    }

    /// Whether the catalogue has versions of this package branch (the
    /// package list is sorted by name).
    pub async fn branch_exists(&self, package: &str, branch: &str) -> Result<bool, ApiError> {
        let list = self.packages().await?;
        Ok(list
            .binary_search_by(|p| p.name.as_str().cmp(package))
            .is_ok_and(|i| list[i].branches.iter().any(|b| b == branch)))
    }

    /// Checks `Authorization: Bearer KEY`; returns the key's name and scopes.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<KeyAuth, ApiError> {
        let token = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("missing 'Authorization: Bearer KEY' header"))?;
        self.catalogue
            .verify_key(token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or revoked API key"))
    }

    /// Refuses unless `key` may publish or delete versions of `package`.
    pub fn require_publish(&self, key: &KeyAuth, package: &str) -> Result<(), ApiError> {
        if key.scopes.may_publish(package) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "API key {:?} (scopes: {}) may not publish or delete {package}",
                key.name, key.scopes
            )))
        }
    }
}

/// The answer for a version that is not in the catalogue: 400 when the text
/// is not a valid version (with the reason), 404 otherwise. Lookups go by
/// exact text first, so rows an older release accepted stay reachable.
pub fn not_published(package: &str, branch: &str, version: &str) -> ApiError {
    match ota_core::Version::parse(version) {
        Err(e) => ApiError::bad_request(e.to_string()),
        Ok(_) => ApiError::not_found(format!(
            "{package} {version} is not published on branch {branch}"
        )),
    }
}

/// Validates a package or branch name from a request.
pub fn valid_name(what: &'static str, value: &str) -> Result<(), ApiError> {
    check_name(what, value).map_err(|e| ApiError::bad_request(e.to_string()))
}
