//! Path search timings and pack counts: `cargo run --release -p ota-graph
//! --example search_bench [VERSIONS] [QUERIES]` (run by `bench/graph.sh`).

use ota_graph::{Direction, Geometry, VersionMap};
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let queries: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    for size in [100, 10_000, n] {
        let mut map = VersionMap::new(Geometry::default());
        let mut packs = 0u64;
        for v in 0..size {
            for e in map.append(&v.to_string()).expect("distinct versions") {
                let bytes = 1_000 + (e.from * 31 + e.to * 17) % 5_000;
                map.set_pack(e, Direction::Upgrade, bytes)
                    .expect("edge exists");
                map.set_pack(e, Direction::Rollback, bytes + 100)
                    .expect("edge exists");
                packs += 2;
            }
        }
        println!(
            "{size} versions: {packs} packs, {:.2} packs/version",
            packs as f64 / size as f64
        );
        if size != n {
            continue;
        }
        // A fixed pseudo-random sequence of (from, to) pairs.
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % size
        };
        let mut times = Vec::with_capacity(queries);
        let mut hops = 0usize;
        for _ in 0..queries {
            let (i, j) = (next(), next());
            let t = Instant::now();
            let path = map.search_indices(i, j).expect("every pack is built");
            times.push(t.elapsed().as_nanos() as u64);
            hops += path.hops.len();
        }
        times.sort_unstable();
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize] as f64 / 1_000.0;
        println!(
            "search over {size} versions, {queries} random pairs: median {:.1} µs, p99 {:.1} µs, max {:.1} µs, mean {:.1} packs a path",
            pct(0.5),
            pct(0.99),
            pct(1.0),
            hops as f64 / queries as f64
        );
    }
}
