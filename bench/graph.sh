#!/usr/bin/env bash
# Shortest-path search on the version skip-list and how many packs it keeps:
# median / p99 search time over random pairs of a 100,000-version history,
# and packs per version at 100, 10,000 and 100,000 versions.
# Usage: bench/graph.sh [VERSIONS] [QUERIES]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p ota-graph --example search_bench -- "${1:-100000}" "${2:-20000}"
