#!/usr/bin/env bash
# Download throughput of one 256 MiB blob, 4 parallel clients (curl), in one
# run on this machine:
#   1. `ota serve --blobs s3://…` on Garage, local cache cold (every byte
#      streamed from the object store with ranged GETs),
#   2. the same server once its cache is filled (served from the data
#      directory, as the local backend does),
#   3. `ota serve` on the local backend,
#   4. nginx serving the same file statically (sendfile).
# Prints MB/s (10^6 bytes) aggregated over the clients, best of ROUNDS.
# Usage: bench/blobs.sh [ROUNDS]   (needs root for apt-get if tools are missing;
# garage from ~/.cargo/bin or PATH, as .ci/run installs it)
set -euo pipefail
rounds=${1:-3}
clients=${CLIENTS:-4}
size_mib=${SIZE_MIB:-256}
cd "$(dirname "$0")/.."
need=()
for t in nginx curl; do command -v $t >/dev/null || need+=($t); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq nginx curl >/dev/null; fi
ota=${OTA_BIN:-target/release/ota}
[ -n "${OTA_BIN:-}" ] || cargo build --release -q -p ota-cli
work=$(mktemp -d /var/tmp/ota-bench-blobs.XXXXXX); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -s "$work/garage/garage.pid" ] && kill "$(cat "$work/garage/garage.pid")" 2>/dev/null || true
  sleep 0.5; rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
eval "$(.ci/start-garage.sh "$work/garage" "$port")"
s3="${OTA_TEST_S3_URL/ota-test?/ota-test/bench?}"

serve() { # NAME PORT ARGS… ; waits until it listens
  local name=$1 p=$2; shift 2
  $ota serve --listen 127.0.0.1:$p "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!); echo $! >"$work/$name.pid"
  for _ in $(seq 100); do grep -q listening "$work/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}
stop() { kill "$(cat "$work/$1.pid")"; while kill -0 "$(cat "$work/$1.pid")" 2>/dev/null; do sleep 0.1; done; }

head -c $((size_mib << 20)) /dev/urandom >"$work/big.bin"
sha=$(sha256sum "$work/big.bin" | cut -c1-64)

# Parallel downloads of URL; prints aggregate MB/s. Each client's bytes are checked.
run() {
  local url=$1 start end
  start=$(date +%s.%N)
  for i in $(seq "$clients"); do
    curl -sf -o "$work/dl.$i" "$url" &
  done
  wait
  end=$(date +%s.%N)
  for i in $(seq "$clients"); do
    [ "$(stat -c %s "$work/dl.$i")" = $((size_mib << 20)) ] || { echo "short download" >&2; exit 1; }
  done
  rm -f "$work"/dl.*
  echo "$start $end" | awk -v b=$(( (size_mib << 20) * clients )) '{printf "%.0f\n", b / ($2 - $1) / 1e6}'
}
best() { local b=0 v; for _ in $(seq "$rounds"); do v=$("$@"); b=$(( v > b ? v : b )); done; echo $b; }

# --- S3 backend: publish, then restart with an empty cache ---
key=$($ota keys create bench --data "$work/s3data")
serve s3 18281 --data "$work/s3data" --blobs "$s3" --pack-workers 0
$ota publish --server http://127.0.0.1:18281 --key "$key" --package org.example.big \
  --pkg-version 1.0.0 "$work/big.bin" >/dev/null 2>&1
s3_url="http://127.0.0.1:18281/otafiles/$sha"
cold=0
for _ in $(seq "$rounds"); do
  stop s3; rm -rf "$work/s3data/blobs"; mkdir -p "$work/s3data/blobs"
  serve s3 18281 --data "$work/s3data" --blobs "$s3" --pack-workers 0
  v=$(run "$s3_url"); cold=$(( v > cold ? v : cold ))
done
# The cold misses fill the cache in the background.
for _ in $(seq 300); do [ -f "$work/s3data/blobs/${sha:0:2}/$sha" ] && break; sleep 0.1; done
warm=$(best run "$s3_url")

# --- local backend ---
key=$($ota keys create bench --data "$work/localdata")
serve local 18282 --data "$work/localdata" --pack-workers 0
$ota publish --server http://127.0.0.1:18282 --key "$key" --package org.example.big \
  --pkg-version 1.0.0 "$work/big.bin" >/dev/null 2>&1
local_mbs=$(best run "http://127.0.0.1:18282/otafiles/$sha")

# --- nginx, the same file ---
mkdir -p "$work/www/otafiles" "$work/nginx"
ln "$work/localdata/blobs/${sha:0:2}/$sha" "$work/www/otafiles/$sha" 2>/dev/null ||
  cp "$work/big.bin" "$work/www/otafiles/$sha"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  default_type application/octet-stream;
  server { listen 127.0.0.1:18283; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
sleep 0.5
nginx_mbs=$(best run "http://127.0.0.1:18283/otafiles/$sha")

printf '%s MiB blob, %s parallel curl clients, MB/s (best of %s)\n' "$size_mib" "$clients" "$rounds"
printf '%-40s %8s\n' "ota serve, S3 (Garage), cache cold" "$cold" \
  "ota serve, S3 (Garage), cache warm" "$warm" \
  "ota serve, local backend" "$local_mbs" \
  "nginx, static file (sendfile)" "$nginx_mbs"
