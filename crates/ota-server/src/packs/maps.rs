//! Each branch's [`VersionMap`], rebuilt from the catalogue (its map rows
//! and its delta rows) and kept in memory until something changes it.

use crate::error::ApiError;
use ota_core::Sha256Hex;
use ota_graph::{Direction, Edge, Geometry, VersionMap};
use ota_store::{Catalogue, Delta};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A stored pack, as a bundle needs it.
#[derive(Clone, Debug)]
pub struct PackRef {
    /// Blob holding the pack.
    pub sha256: Sha256Hex,
    /// Its size.
    pub size: u64,
    /// Its Ed25519 signature.
    pub signature: [u8; 64],
    /// Digest of the version it produces.
    pub target_digest: String,
}

/// One branch's map and the packs on it.
#[derive(Debug)]
pub struct BranchMap {
    /// The skip-list and which packs exist.
    pub map: VersionMap,
    /// Packs by (start index, end index).
    pub packs: HashMap<(u64, u64), PackRef>,
    /// Every version ever on the map (deleted ones too), by name.
    pub positions: HashMap<String, u64>,
}

impl BranchMap {
    /// The pack of a hop.
    pub fn pack(&self, hop: &ota_graph::Hop) -> Option<&PackRef> {
        self.packs.get(&(hop.start(), hop.end()))
    }
}

/// The maps of every branch asked about.
#[derive(Debug)]
pub struct DeltaMaps {
    geometry: Geometry,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    maps: HashMap<(String, String), Arc<BranchMap>>,
    /// Bumped by every invalidation: a load that started before one does
    /// not store its (possibly stale) result.
    epoch: u64,
}

impl DeltaMaps {
    /// Maps on the given geometry.
    pub fn new(geometry: Geometry) -> Self {
        DeltaMaps {
            geometry,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The skip-list geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets one branch's map.
    pub fn invalidate(&self, package: &str, branch: &str) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.maps.remove(&(package.to_owned(), branch.to_owned()));
    }

    /// Forgets every map (another server changed the catalogue).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.maps.clear();
    }

    /// A branch's map, from memory or the catalogue.
    pub async fn get(
        &self,
        catalogue: &Catalogue,
        package: &str,
        branch: &str,
    ) -> Result<Arc<BranchMap>, ApiError> {
        let key = (package.to_owned(), branch.to_owned());
        let epoch = {
            let inner = self.lock();
            if let Some(m) = inner.maps.get(&key) {
                return Ok(m.clone());
            }
            inner.epoch
        };
        let rows = catalogue.map_versions(package, branch).await?;
        let deltas = catalogue.deltas(package, branch).await?;
        let built = Arc::new(build(self.geometry, &rows, &deltas)?);
        let mut inner = self.lock();
        if inner.epoch == epoch {
            inner.maps.insert(key, built.clone());
        }
        Ok(built)
    }
}

fn build(
    geometry: Geometry,
    rows: &[ota_store::MapVersion],
    deltas: &[Delta],
) -> Result<BranchMap, ApiError> {
    let corrupt = |why: String| ApiError::internal("reading the delta map", why);
    let mut map = VersionMap::new(geometry);
    let mut positions = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if row.position != i as u64 {
            return Err(corrupt(format!(
                "position {} where {i} was expected",
                row.position
            )));
        }
        map.append(&row.version)
            .map_err(|e| corrupt(e.to_string()))?;
        positions.insert(row.version.clone(), row.position);
    }
    for row in rows.iter().filter(|r| r.deleted) {
        map.delete(&row.version)
            .map_err(|e| corrupt(e.to_string()))?;
    }
    let mut packs = HashMap::new();
    for d in deltas {
        let d = &d.delta;
        let (Some(level), Some(&a), Some(&b)) = (
            d.level,
            positions.get(&d.from_version),
            positions.get(&d.to_version),
        ) else {
            continue; // not a skip-list pack (e.g. a ROM's incremental)
        };
        let (edge, dir) = match d.direction.as_str() {
            "upgrade" => (
                Edge {
                    level: level as u32,
                    from: a,
                    to: b,
                },
                Direction::Upgrade,
            ),
            "rollback" => (
                Edge {
                    level: level as u32,
                    from: b,
                    to: a,
                },
                Direction::Rollback,
            ),
            _ => continue,
        };
        let (Ok(sha256), Some(signature), Some(target_digest)) = (
            Sha256Hex::parse(&d.sha256),
            d.signature.as_deref().and_then(decode_signature),
            d.target_digest.clone(),
        ) else {
            tracing::warn!(
                "delta {} {} -> {} of {}/{} lacks a hash, signature or digest; ignored",
                d.direction,
                d.from_version,
                d.to_version,
                d.package,
                d.branch
            );
            continue;
        };
        if map.set_pack(edge, dir, d.size).is_err() {
            continue; // an edge of another geometry
        }
        packs.insert(
            (a, b),
            PackRef {
                sha256,
                size: d.size,
                signature,
                target_digest,
            },
        );
    }
    Ok(BranchMap {
        map,
        packs,
        positions,
    })
}

/// Signatures are stored as hex in the catalogue.
pub fn decode_signature(text: &str) -> Option<[u8; 64]> {
    let bytes = hex::decode(text).ok()?;
    bytes.try_into().ok()
}
