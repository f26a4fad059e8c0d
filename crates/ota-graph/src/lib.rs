//! Pure logic of delta serving: the skip-list of a branch's versions
//! ([`skiplist`]), the packs built on it and the shortest path between two
//! versions ([`version_map`]), and the update strategies that pick a
//! client's destination ([`strategy`]). No I/O: the server keeps the catalogue and
//! the packs, and feeds this crate what they hold.
//!
//! ```
//! use ota_graph::{Direction, Geometry, VersionMap};
//! let mut map = VersionMap::new(Geometry::default());
//! for v in ["1.0.0", "1.0.1", "1.0.2", "1.1.0"] {
//!     // Each new version yields the edges whose two packs must be built.
//!     for edge in map.append(v).unwrap() {
//!         map.set_pack(edge, Direction::Upgrade, 1_000).unwrap();
//!         map.set_pack(edge, Direction::Rollback, 1_200).unwrap();
//!     }
//! }
//! // 1.0.0 → 1.1.0 is one level-1 pack (indexes 0 → 3), not three.
//! let path = map.search("1.0.0", "1.1.0").unwrap().unwrap();
//! assert_eq!(path.hops.len(), 1);
//! let back = map.search("1.1.0", "1.0.1").unwrap().unwrap();
//! assert_eq!(back.hops.len(), 2); // rollback 3 → 0, then upgrade 0 → 1
//! ```

mod fenwick;
pub mod skiplist;
pub mod strategy;
pub mod version_map;

pub use skiplist::{Edge, Geometry};
pub use version_map::{Direction, Hop, MapError, Path, VersionMap};
