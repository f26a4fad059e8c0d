//! The logical skip-list's geometry: which edges (delta packs) exist.
//!
//! Versions of a package branch sit at indexes 0, 1, 2, … in the order they
//! were added. Level 0 joins every pair of neighbours. Level `l ≥ 1` has
//! edges of length `distance_of_level(l)` = `basic · factor^(l-1)` (3, 6,
//! 12, … 768 with the defaults), joining consecutive multiples of that
//! length. Appending index `i` therefore adds an edge `i - d → i` for every
//! level whose length `d` divides `i`: about `1 + 1/3 + 1/6 + …` ≈ 1.67
//! edges per version, each carrying two packs (upgrade and rollback), so
//! storage stays O(n). Lengths stop growing at `max_level`, whose length is
//! the map's capacity: beyond it, long jumps chain at that length.
//!
//! ```
//! use ota_graph::skiplist::Geometry;
//! let g = Geometry::default();
//! assert_eq!(g.capacity(), 768);
//! assert_eq!(g.level_of_distance(6), 2);
//! assert_eq!(g.distance_of_level(2), 6);
//! // Index 12 gets edges from 11 (level 0), 9 (level 1), 6 (level 2), 0 (level 3).
//! let from: Vec<u64> = g.edges_ending_at(12).map(|e| e.from).collect();
//! assert_eq!(from, [11, 9, 6, 0]);
//! ```

/// One edge of the skip-list: two packs (upgrade `from → to`, rollback `to → from`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Edge {
    /// The level (0 joins neighbours).
    pub level: u32,
    /// The older index.
    pub from: u64,
    /// The newer index (`from + distance_of_level(level)`).
    pub to: u64,
}

/// The skip-list's parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Length of level 1 (a small power of 2 or 3).
    pub basic_distance: u64,
    /// Growth per level (2: the search relies on nested multiples).
    pub factor: u64,
    /// Highest level.
    pub max_level: u32,
}

impl Default for Geometry {
    /// Basic distance 3, factor 2, max level 9 (capacity 768).
    fn default() -> Self {
        Geometry {
            basic_distance: 3,
            factor: 2,
            max_level: 9,
        }
    }
}

/// Why parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid skip-list parameters: {0}")]
pub struct GeometryError(pub String);

impl Geometry {
    /// Checks the parameters: basic distance ≥ 2, factor ≥ 2, max level
    /// 1..=40, and a capacity that fits in 48 bits.
    pub fn new(basic_distance: u64, factor: u64, max_level: u32) -> Result<Self, GeometryError> {
        let g = Geometry {
            basic_distance,
            factor,
            max_level,
        };
        if basic_distance < 2 || factor < 2 || !(1..=40).contains(&max_level) {
            return Err(GeometryError(format!(
                "basic distance {basic_distance} (≥ 2), factor {factor} (≥ 2), max level {max_level} (1..=40)"
            )));
        }
        let mut cap: u64 = basic_distance;
        for _ in 1..max_level {
            cap = cap
                .checked_mul(factor)
                .filter(|c| *c < 1 << 48)
                .ok_or_else(|| GeometryError("capacity exceeds 2^48".into()))?;
        }
        Ok(g)
    }

    /// The level of an edge of length `dist` (the seed's `levelOfDistance`).
    pub fn level_of_distance(&self, dist: u64) -> u32 {
        if dist < self.basic_distance {
            return 0;
        }
        let mut level = 0;
        let mut l = self.basic_distance;
        while dist >= l {
            level += 1;
            l = l.saturating_mul(self.factor);
        }
        level
    }

    /// The length of an edge at `level` (the seed's `distanceOfLevel`).
    pub fn distance_of_level(&self, level: u32) -> u64 {
        if level == 0 {
            return 1;
        }
        let mut d = self.basic_distance;
        for _ in 1..level.min(self.max_level) {
            d = d.saturating_mul(self.factor);
        }
        d
    }

    /// The longest edge (the seed's capacity).
    pub fn capacity(&self) -> u64 {
        self.distance_of_level(self.max_level)
    }

    /// Edges that appending index `i` creates, lowest level first.
    pub fn edges_ending_at(&self, i: u64) -> impl Iterator<Item = Edge> + '_ {
        (0..=self.max_level).filter_map(move |level| {
            let d = self.distance_of_level(level);
            (i >= d && i.is_multiple_of(d)).then(|| Edge {
                level,
                from: i - d,
                to: i,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_functions() {
        let g = Geometry::default();
        assert_eq!(g.level_of_distance(0), 0);
        assert_eq!(g.level_of_distance(2), 0);
        assert_eq!(g.level_of_distance(3), 1);
        assert_eq!(g.level_of_distance(5), 1);
        assert_eq!(g.level_of_distance(768), 9);
        assert_eq!(g.distance_of_level(0), 1);
        assert_eq!(g.distance_of_level(1), 3);
        assert_eq!(g.distance_of_level(9), 768);
        assert_eq!(g.distance_of_level(12), 768, "lengths stop at max_level");
        assert_eq!(g.capacity(), 768);
        for l in 1..=9 {
            assert_eq!(g.level_of_distance(g.distance_of_level(l)), l);
        }
    }

    #[test]
    fn edges_are_linear_in_versions() {
        let g = Geometry::default();
        let n = 100_000u64;
        let edges: u64 = (0..n).map(|i| g.edges_ending_at(i).count() as u64).sum();
        let per_version = edges as f64 / n as f64;
        assert!(per_version < 1.7, "{per_version}");
    }

    #[test]
    fn parameters_are_checked() {
        assert!(Geometry::new(3, 2, 9).is_ok());
        assert!(Geometry::new(1, 2, 9).is_err());
        assert!(Geometry::new(3, 1, 9).is_err());
        assert!(Geometry::new(3, 2, 0).is_err());
        assert!(Geometry::new(3, 2, 60).is_err());
    }
}
