//! The versions of one package branch on the skip-list, the packs built so
//! far, and the shortest delta path between two versions.
//!
//! Versions keep the index they were appended at; a deleted version stays
//! as a waypoint (its packs still join its neighbours) but is never a source
//! or a destination. A path uses only packs that exist: a new version's
//! edges become usable as their packs are stored ([`VersionMap::set_pack`]).
//!
//! **Search.** The shortest path (fewest packs, then fewest bytes) between
//! indexes `i` and `j` runs up the levels from `i`, along the highest useful
//! level and down to `j`, possibly overshooting (`0 → 768 → 767` beats ten
//! hops inside `0..767`). So only the nearest multiples of each level's
//! length around `i` and `j` can be turning points: the search runs
//! Dijkstra over those ≈ 4 × levels candidates, joining consecutive
//! candidates of each level by the run of that level's edges between them,
//! whose cost comes from Fenwick trees in O(log n). When a run it would use
//! has a missing pack (a version whose jobs are still running), it falls
//! back to Dijkstra over the whole graph, which is exact whatever is
//! missing. Property tests check both against a brute-force search.

use crate::fenwick::Fenwick;
use crate::skiplist::{Edge, Geometry};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Which way a pack goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// From the older version to the newer (`edge.from → edge.to`).
    Upgrade,
    /// From the newer version to the older (`edge.to → edge.from`).
    Rollback,
}

/// One pack of a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hop {
    /// The edge whose pack is used.
    pub edge: Edge,
    /// Which of its two packs.
    pub direction: Direction,
}

impl Hop {
    /// The index this hop starts at.
    pub fn start(&self) -> u64 {
        match self.direction {
            Direction::Upgrade => self.edge.from,
            Direction::Rollback => self.edge.to,
        }
    }
    /// The index this hop ends at.
    pub fn end(&self) -> u64 {
        match self.direction {
            Direction::Upgrade => self.edge.to,
            Direction::Rollback => self.edge.from,
        }
    }
}

/// A path: the packs to apply in order, and their total size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Packs in application order.
    pub hops: Vec<Hop>,
    /// Sum of the packs' sizes.
    pub bytes: u64,
}

/// Why an operation on the map was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// The version is already in the map.
    #[error("version {0:?} is already in the map")]
    Duplicate(String),
    /// The version is not in the map (or was deleted).
    #[error("version {0:?} is not in the map")]
    Unknown(String),
    /// The edge is not one the geometry creates, or not yet appended.
    #[error("no edge {0:?} in the map")]
    NoEdge(Edge),
}

/// Packs of one level and direction: sizes and how many exist.
#[derive(Clone, Debug, Default)]
struct LevelPacks {
    bytes: [Fenwick; 2],
    built: [Fenwick; 2],
}

fn slot(d: Direction) -> usize {
    match d {
        Direction::Upgrade => 0,
        Direction::Rollback => 1,
    }
}

/// The map of one package branch.
#[derive(Clone, Debug)]
pub struct VersionMap {
    geometry: Geometry,
    versions: Vec<String>,
    deleted: Vec<bool>,
    index: HashMap<String, u64>,
    /// Per level: edge `k` joins `k·d` and `(k+1)·d`.
    levels: Vec<LevelPacks>,
}

/// Lexicographic path cost: (packs, bytes).
type Cost = (u64, u64);

impl VersionMap {
    /// An empty map.
    pub fn new(geometry: Geometry) -> Self {
        VersionMap {
            geometry,
            versions: Vec::new(),
            deleted: Vec::new(),
            index: HashMap::new(),
            levels: (0..=geometry.max_level)
                .map(|_| LevelPacks::default())
                .collect(),
        }
    }

    /// The geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Versions appended (deleted ones included).
    pub fn len(&self) -> u64 {
        self.versions.len() as u64
    }

    /// True before the first append.
    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// Adds the next version; returns the edges whose packs must be built.
    pub fn append(&mut self, version: &str) -> Result<Vec<Edge>, MapError> {
        if self.index.contains_key(version) {
            return Err(MapError::Duplicate(version.to_owned()));
        }
        let i = self.len();
        self.versions.push(version.to_owned());
        self.deleted.push(false);
        self.index.insert(version.to_owned(), i);
        let edges: Vec<Edge> = self.geometry.edges_ending_at(i).collect();
        for e in &edges {
            let packs = &mut self.levels[e.level as usize];
            for f in packs.bytes.iter_mut().chain(packs.built.iter_mut()) {
                f.push(0);
            }
        }
        Ok(edges)
    }

    /// The index of a live version.
    pub fn index_of(&self, version: &str) -> Option<u64> {
        self.index
            .get(version)
            .copied()
            .filter(|&i| !self.deleted[i as usize])
    }

    /// The version at an index (deleted ones too).
    pub fn version_at(&self, i: u64) -> Option<&str> {
        self.versions.get(i as usize).map(String::as_str)
    }

    /// Marks a version deleted: it stays a waypoint, never an endpoint.
    pub fn delete(&mut self, version: &str) -> Result<(), MapError> {
        let i = self
            .index_of(version)
            .ok_or_else(|| MapError::Unknown(version.to_owned()))?;
        self.deleted[i as usize] = true;
        Ok(())
    }

    fn edge_slot(&self, e: Edge) -> Result<usize, MapError> {
        let d = self.geometry.distance_of_level(e.level);
        let valid = e.level <= self.geometry.max_level
            && e.to == e.from + d
            && e.from.is_multiple_of(d)
            && e.to < self.len();
        if !valid {
            return Err(MapError::NoEdge(e));
        }
        Ok((e.from / d) as usize)
    }

    /// Records that a pack exists, with its size. Setting it again keeps
    /// the first size (a pack's content is fixed by its two versions).
    pub fn set_pack(&mut self, e: Edge, dir: Direction, bytes: u64) -> Result<(), MapError> {
        let k = self.edge_slot(e)?;
        let packs = &mut self.levels[e.level as usize];
        if packs.built[slot(dir)].range(k, k + 1) == 0 {
            packs.built[slot(dir)].add(k, 1);
            packs.bytes[slot(dir)].add(k, bytes);
        }
        Ok(())
    }

    /// True when the pack exists.
    pub fn has_pack(&self, e: Edge, dir: Direction) -> bool {
        self.edge_slot(e)
            .is_ok_and(|k| self.levels[e.level as usize].built[slot(dir)].range(k, k + 1) == 1)
    }

    /// The size of a pack, if it exists.
    pub fn pack_bytes(&self, e: Edge, dir: Direction) -> Option<u64> {
        let k = self.edge_slot(e).ok()?;
        let packs = &self.levels[e.level as usize];
        (packs.built[slot(dir)].range(k, k + 1) == 1)
            .then(|| packs.bytes[slot(dir)].range(k, k + 1))
    }

    /// True when both packs of every edge ending at the version exist, so
    /// it can be offered as a destination (and as `newest`).
    pub fn is_ready(&self, version: &str) -> bool {
        self.index_of(version).is_some_and(|i| {
            self.geometry.edges_ending_at(i).all(|e| {
                self.has_pack(e, Direction::Upgrade) && self.has_pack(e, Direction::Rollback)
            })
        })
    }

    /// The newest live version that is ready.
    pub fn newest_ready(&self) -> Option<&str> {
        (0..self.len())
            .rev()
            .filter(|&i| !self.deleted[i as usize])
            .map(|i| self.versions[i as usize].as_str())
            .find(|v| self.is_ready(v))
    }

    /// The shortest path between two live versions (fewest packs, then
    /// fewest bytes); `Some` with no hops when they are the same version,
    /// `None` when the packs that exist do not join them.
    pub fn search(&self, from: &str, to: &str) -> Result<Option<Path>, MapError> {
        let i = self
            .index_of(from)
            .ok_or_else(|| MapError::Unknown(from.to_owned()))?;
        let j = self
            .index_of(to)
            .ok_or_else(|| MapError::Unknown(to.to_owned()))?;
        Ok(self.search_indices(i, j))
    }

    /// [`VersionMap::search`] by index.
    pub fn search_indices(&self, i: u64, j: u64) -> Option<Path> {
        if i >= self.len() || j >= self.len() {
            return None;
        }
        if i == j {
            return Some(Path {
                hops: Vec::new(),
                bytes: 0,
            });
        }
        match self.candidate_search(i, j) {
            Ok(path) => path,
            Err(Blocked) => self.full_search(i, j),
        }
    }

    /// Cost of the run of level-`l` edges between `a < b` (multiples of its
    /// length) in one direction, or `None` if a pack is missing.
    fn run_cost(&self, level: u32, a: u64, b: u64, dir: Direction) -> Option<Cost> {
        let d = self.geometry.distance_of_level(level);
        let (ka, kb) = ((a / d) as usize, (b / d) as usize);
        let packs = &self.levels[level as usize];
        let n = (kb - ka) as u64;
        (packs.built[slot(dir)].range(ka, kb) == n)
            .then(|| (n, packs.bytes[slot(dir)].range(ka, kb)))
    }

    fn candidates(&self, i: u64, j: u64) -> Vec<u64> {
        let last = self.len() - 1;
        let mut c = vec![i, j];
        for level in 1..=self.geometry.max_level {
            let d = self.geometry.distance_of_level(level);
            for x in [i, j] {
                let below = x / d * d;
                c.push(below);
                if below + d <= last {
                    c.push(below + d);
                }
            }
        }
        c.sort_unstable();
        c.dedup();
        c
    }

    fn candidate_search(&self, i: u64, j: u64) -> Result<Option<Path>, Blocked> {
        let nodes = self.candidates(i, j);
        let pos = |x: u64| nodes.binary_search(&x).unwrap_or(0);
        // Runs between consecutive candidates of each level, both ways.
        let mut adj: Vec<Vec<(usize, u32, Direction, Cost)>> = vec![Vec::new(); nodes.len()];
        let mut blocked = false;
        for level in 0..=self.geometry.max_level {
            let d = self.geometry.distance_of_level(level);
            let on_level: Vec<u64> = nodes
                .iter()
                .copied()
                .filter(|x| x.is_multiple_of(d))
                .collect();
            for w in on_level.windows(2) {
                let (a, b) = (w[0], w[1]);
                for (dir, s, t) in [(Direction::Upgrade, a, b), (Direction::Rollback, b, a)] {
                    match self.run_cost(level, a, b, dir) {
                        Some(cost) => adj[pos(s)].push((pos(t), level, dir, cost)),
                        None => blocked = true,
                    }
                }
            }
        }
        if blocked {
            return Err(Blocked);
        }
        // Dijkstra over the candidates.
        let (start, goal) = (pos(i), pos(j));
        let mut best: Vec<Option<Cost>> = vec![None; nodes.len()];
        let mut prev: Vec<Option<(usize, u32, Direction)>> = vec![None; nodes.len()];
        let mut heap = BinaryHeap::new();
        best[start] = Some((0, 0));
        heap.push(Reverse(((0u64, 0u64), start)));
        while let Some(Reverse((cost, u))) = heap.pop() {
            if best[u].is_some_and(|b| b < cost) {
                continue;
            }
            if u == goal {
                break;
            }
            for &(v, level, dir, (hops, bytes)) in &adj[u] {
                let next = (cost.0 + hops, cost.1 + bytes);
                if best[v].is_none_or(|b| next < b) {
                    best[v] = Some(next);
                    prev[v] = Some((u, level, dir));
                    heap.push(Reverse((next, v)));
                }
            }
        }
        let Some((_, bytes)) = best[goal] else {
            return Ok(None);
        };
        // Expand the runs into single packs, from the goal back.
        let mut runs = Vec::new();
        let mut v = goal;
        while let Some((u, level, dir)) = prev[v] {
            runs.push((nodes[u], nodes[v], level, dir));
            v = u;
        }
        let mut hops = Vec::new();
        for &(s, t, level, dir) in runs.iter().rev() {
            let d = self.geometry.distance_of_level(level);
            let mut x = s;
            while x != t {
                let y = if t > x { x + d } else { x - d };
                let (from, to) = (x.min(y), x.max(y));
                hops.push(Hop {
                    edge: Edge { level, from, to },
                    direction: dir,
                });
                x = y;
            }
        }
        Ok(Some(Path { hops, bytes }))
    }

    /// Neighbours of `x` through existing packs: (node, hop, cost).
    fn neighbours(&self, x: u64) -> impl Iterator<Item = (u64, Hop, u64)> + '_ {
        let n = self.len();
        (0..=self.geometry.max_level).flat_map(move |level| {
            let d = self.geometry.distance_of_level(level);
            let mut out = Vec::with_capacity(2);
            if x.is_multiple_of(d) {
                if x + d < n {
                    let edge = Edge {
                        level,
                        from: x,
                        to: x + d,
                    };
                    if let Some(b) = self.pack_bytes(edge, Direction::Upgrade) {
                        out.push((
                            x + d,
                            Hop {
                                edge,
                                direction: Direction::Upgrade,
                            },
                            b,
                        ));
                    }
                }
                if x >= d {
                    let edge = Edge {
                        level,
                        from: x - d,
                        to: x,
                    };
                    if let Some(b) = self.pack_bytes(edge, Direction::Rollback) {
                        out.push((
                            x - d,
                            Hop {
                                edge,
                                direction: Direction::Rollback,
                            },
                            b,
                        ));
                    }
                }
            }
            out
        })
    }

    /// Dijkstra over the whole graph: exact whatever packs are missing.
    fn full_search(&self, i: u64, j: u64) -> Option<Path> {
        let n = self.len() as usize;
        let mut best: Vec<Option<Cost>> = vec![None; n];
        let mut prev: Vec<Option<(u64, Hop)>> = vec![None; n];
        let mut heap = BinaryHeap::new();
        best[i as usize] = Some((0, 0));
        heap.push(Reverse(((0u64, 0u64), i)));
        while let Some(Reverse((cost, u))) = heap.pop() {
            if best[u as usize].is_some_and(|b| b < cost) {
                continue;
            }
            if u == j {
                break;
            }
            for (v, hop, bytes) in self.neighbours(u) {
                let next = (cost.0 + 1, cost.1 + bytes);
                if best[v as usize].is_none_or(|b| next < b) {
                    best[v as usize] = Some(next);
                    prev[v as usize] = Some((u, hop));
                    heap.push(Reverse((next, v)));
                }
            }
        }
        let (_, bytes) = best[j as usize]?;
        let mut hops = Vec::new();
        let mut v = j;
        while let Some((u, hop)) = prev[v as usize] {
            hops.push(hop);
            v = u;
        }
        hops.reverse();
        Some(Path { hops, bytes })
    }
}

/// A run the candidate search needed has a missing pack.
struct Blocked;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Independent brute force: Dijkstra over adjacency lists built from
    /// the geometry's edge rule and the packs present.
    fn brute(map: &VersionMap, i: u64, j: u64) -> Option<Cost> {
        let n = map.len() as usize;
        let mut adj: Vec<Vec<(usize, u64)>> = vec![Vec::new(); n];
        for t in 0..map.len() {
            for e in map.geometry().edges_ending_at(t) {
                if let Some(b) = map.pack_bytes(e, Direction::Upgrade) {
                    adj[e.from as usize].push((e.to as usize, b));
                }
                if let Some(b) = map.pack_bytes(e, Direction::Rollback) {
                    adj[e.to as usize].push((e.from as usize, b));
                }
            }
        }
        let mut best: Vec<Option<Cost>> = vec![None; n];
        best[i as usize] = Some((0, 0));
        // Bellman-Ford style relaxation until nothing changes.
        loop {
            let mut changed = false;
            for u in 0..n {
                let Some(c) = best[u] else { continue };
                for &(v, b) in &adj[u] {
                    let next = (c.0 + 1, c.1 + b);
                    if best[v].is_none_or(|x| next < x) {
                        best[v] = Some(next);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        best[j as usize]
    }

    fn check_path(map: &VersionMap, i: u64, j: u64, p: &Path) {
        let mut at = i;
        let mut bytes = 0;
        for h in &p.hops {
            assert_eq!(h.start(), at, "hops are contiguous");
            bytes += map
                .pack_bytes(h.edge, h.direction)
                .expect("every pack exists");
            at = h.end();
        }
        assert_eq!(at, j);
        assert_eq!(bytes, p.bytes);
    }

    fn build(n: u64, geometry: Geometry, sizes: &[u64], missing: &[u64]) -> VersionMap {
        let mut map = VersionMap::new(geometry);
        for v in 0..n {
            for e in map.append(&format!("{v}")).unwrap() {
                for (k, dir) in [(0, Direction::Upgrade), (1, Direction::Rollback)] {
                    let key = e.from * 7 + e.to * 3 + k;
                    if missing.contains(&(key % 97)) && e.to + 3 >= n {
                        continue; // recent versions' jobs still running
                    }
                    let size = sizes[(key as usize) % sizes.len()];
                    map.set_pack(e, dir, size).unwrap();
                }
            }
        }
        map
    }

    #[test]
    fn overshooting_beats_walking_inside() {
        let map = build(800, Geometry::default(), &[100], &[]);
        let p = map.search("0", "767").unwrap().unwrap();
        assert_eq!(p.hops.len(), 2, "{:?}", p.hops);
        let p = map.search("767", "0").unwrap().unwrap();
        assert_eq!(p.hops.len(), 2);
        assert_eq!(map.search("5", "5").unwrap().unwrap().hops.len(), 0);
        assert!(map.search("5", "x").is_err());
    }

    #[test]
    fn deleted_versions_are_waypoints_not_endpoints() {
        let mut map = build(50, Geometry::default(), &[10, 20, 5], &[]);
        let before = map.search("0", "48").unwrap().unwrap();
        map.delete("24").unwrap();
        assert_eq!(map.search("0", "48").unwrap().unwrap(), before);
        assert!(matches!(map.search("0", "24"), Err(MapError::Unknown(_))));
        assert!(
            map.append("24").is_err(),
            "a deleted version's name stays taken"
        );
    }

    #[test]
    fn readiness_waits_for_every_pack() {
        let mut map = VersionMap::new(Geometry::default());
        for v in 0..12 {
            let edges = map.append(&v.to_string()).unwrap();
            if v < 11 {
                for e in edges {
                    map.set_pack(e, Direction::Upgrade, 1).unwrap();
                    map.set_pack(e, Direction::Rollback, 1).unwrap();
                }
            }
        }
        assert_eq!(map.newest_ready(), Some("10"));
        assert!(!map.is_ready("11"));
        assert!(map.search("0", "11").unwrap().is_none());
        let g = *map.geometry();
        for e in g.edges_ending_at(11) {
            map.set_pack(e, Direction::Upgrade, 1).unwrap();
            map.set_pack(e, Direction::Rollback, 1).unwrap();
        }
        assert_eq!(map.newest_ready(), Some("11"));
        let bogus = Edge {
            level: 1,
            from: 1,
            to: 4,
        };
        assert_eq!(
            map.set_pack(bogus, Direction::Upgrade, 1),
            Err(MapError::NoEdge(bogus))
        );
    }

    #[test]
    fn long_history_stays_fast_and_short() {
        let map = build(100_000, Geometry::default(), &[1000, 1200, 800], &[]);
        let p = map.search("17", "99999").unwrap().unwrap();
        check_path(&map, 17, 99_999, &p);
        assert_eq!(
            Some((p.hops.len() as u64, p.bytes)),
            brute_fast(&map, 17, 99_999)
        );
    }

    /// Plain Dijkstra for large maps (the Bellman-Ford brute force is O(n²)).
    fn brute_fast(map: &VersionMap, i: u64, j: u64) -> Option<Cost> {
        map.full_search(i, j)
            .map(|p| (p.hops.len() as u64, p.bytes))
    }

    fn geometry() -> impl Strategy<Value = Geometry> {
        (2u64..5, 2u64..4, 1u32..5).prop_map(|(b, f, l)| Geometry::new(b, f, l).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// With every pack built, the candidate search alone (no fallback)
        /// finds the brute-force optimum.
        #[test]
        fn candidate_search_alone_is_exact(
            geometry in geometry(),
            n in 2u64..300,
            sizes in prop::collection::vec(1u64..50, 1..8),
            pairs in prop::collection::vec((0u64..1000, 0u64..1000), 1..12),
        ) {
            let map = build(n, geometry, &sizes, &[]);
            for (a, b) in pairs {
                let (i, j) = (a % n, b % n);
                if i == j { continue; }
                let Ok(Some(p)) = map.candidate_search(i, j) else {
                    return Err(TestCaseError::fail("blocked or no path with every pack built"));
                };
                check_path(&map, i, j, &p);
                prop_assert_eq!(Some((p.hops.len() as u64, p.bytes)), brute(&map, i, j),
                    "{} → {} in {} versions, {:?}", i, j, n, geometry);
            }
        }

        /// Histories longer than the capacity (small geometries), packs of
        /// varied sizes, some recent ones missing, some versions deleted.
        #[test]
        fn search_is_the_brute_force_shortest_path(
            geometry in geometry(),
            n in 2u64..260,
            sizes in prop::collection::vec(1u64..50, 1..8),
            missing in prop::collection::vec(0u64..97, 0..6),
            pairs in prop::collection::vec((0u64..1000, 0u64..1000), 1..12),
            deleted in prop::collection::vec(0u64..1000, 0..4),
        ) {
            let mut map = build(n, geometry, &sizes, &missing);
            for d in deleted {
                let v = (d % n).to_string();
                let _ = map.delete(&v);
            }
            for (a, b) in pairs {
                let (i, j) = (a % n, b % n);
                let (va, vb) = (i.to_string(), j.to_string());
                match map.search(&va, &vb) {
                    Err(MapError::Unknown(_)) => {
                        prop_assert!(map.index_of(&va).is_none() || map.index_of(&vb).is_none());
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                    Ok(None) => prop_assert_eq!(brute(&map, i, j), None),
                    Ok(Some(p)) => {
                        check_path(&map, i, j, &p);
                        prop_assert_eq!(Some((p.hops.len() as u64, p.bytes)), brute(&map, i, j),
                            "{} → {} in {} versions, {:?}", i, j, n, geometry);
                    }
                }
            }
        }
    }
}
