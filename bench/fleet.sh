#!/usr/bin/env bash
# Fleet-scale check-ins: devices that open a connection per request.
#   1. /maxVersion requests/s with `Connection: close` (wrk, 2 threads, 256
#      connections), against nginx serving the same answers as static files;
#   2. an open-loop fleet (crates/ota-server/examples/fleet_load.rs): RATE new
#      connections per second (1,000,000 devices polling once a minute is
#      16,700/s), distinct device ids over PACKAGES packages, latency from
#      each check-in's scheduled start, and the server's RSS; nginx the same.
# Everything shares this machine's cores (the load generators too).
# Usage: bench/fleet.sh [RATE] [SECONDS] [PACKAGES]
set -euo pipefail
rate=${1:-16700}; secs=${2:-20}; packages=${3:-200}
cd "$(dirname "$0")/.."
need=()
for t in nginx wrk curl; do command -v $t >/dev/null || need+=($t); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq nginx wrk curl >/dev/null; fi
cargo build --release -q -p ota-cli
cargo build --release -q -p ota-server --example fleet_load
ota=target/release/ota
load=target/release/examples/fleet_load
work=$(mktemp -d /var/tmp/ota-fleet.XXXXXX); chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 || true

key=$($ota keys create bench --data "$work/data")
$ota serve --data "$work/data" --listen 127.0.0.1:18191 --max-connections 16384 \
  >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!); spid=$!
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
mkdir -p "$work/www" "$work/nginx"
echo "publishing $packages packages"
for k in $(seq 0 $((packages - 1))); do
  head -c 256 /dev/urandom >"$work/p.bin"
  $ota publish --server http://127.0.0.1:18191 --key "$key" --package "pkg-$k" \
    --pkg-version "1.$k.0" --branch main "$work/p.bin" >/dev/null 2>&1
  curl -sf "http://127.0.0.1:18191/maxVersion?package=pkg-$k&branch=main" >"$work/www/pkg-$k.json"
done

cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  default_type application/json;
  server { listen 127.0.0.1:18192 backlog=4096; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!); npid=$!
sleep 0.5

rps() { wrk -t2 -c256 -d10s -H 'Connection: close' "$1" | awk '/Requests\/sec/ {print $2}'; }
max() { echo "$1 $2" | awk '{print ($1>$2)?$1:$2}'; }
ours=0; theirs=0
for _ in 1 2 3; do
  ours=$(max "$ours" "$(rps 'http://127.0.0.1:18191/maxVersion?package=pkg-1&branch=main')")
  theirs=$(max "$theirs" "$(rps 'http://127.0.0.1:18192/pkg-1.json')")
done
echo "== connection per request (wrk -t2 -c256, Connection: close; best of 3) =="
echo "ota serve /maxVersion: $ours req/s"
echo "nginx static file:     $theirs req/s"
echo "ratio: $(echo "$ours $theirs" | awk '{printf "%.2f", $1/$2}')x"

echo "== open-loop fleet: $rate new connections/s for $secs s over $packages packages =="
echo "-- ota serve"
$load --addr 127.0.0.1:18191 --rate "$rate" --seconds "$secs" --packages "$packages" --pid "$spid"
sleep 2
echo "-- nginx (workers' RSS not shown: several processes)"
$load --addr 127.0.0.1:18192 --rate "$rate" --seconds "$secs" --packages "$packages" \
  --path '/pkg-{K}.json'
