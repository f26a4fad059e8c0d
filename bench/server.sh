#!/usr/bin/env bash
# Benchmarks the update server against nginx serving the same bytes as static
# files, in one run on this machine:
#   1. GET /maxVersion requests/s vs nginx serving the same JSON as a file
#      (wrk, 2 threads, 64 connections, loopback, sharing the machine's cores);
#   2. download throughput of a 1 GiB blob vs nginx (sendfile) on loopback;
#   3. peak RSS of the server while it receives a 1 GiB upload.
# Usage: bench/server.sh [SECONDS_PER_WRK_RUN]   (needs root for apt-get if tools are missing)
set -euo pipefail
secs=${1:-10}
cd "$(dirname "$0")/.."
need=()
for t in nginx wrk curl; do command -v $t >/dev/null || need+=($t); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq nginx wrk curl >/dev/null; fi
cargo build --release -q -p ota-cli
ota=target/release/ota
work=$(mktemp -d /var/tmp/ota-bench.XXXXXX); chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# --- our server, with one small and one 1 GiB package published ---
key=$($ota keys create bench --data "$work/data")
$ota serve --data "$work/data" --listen 127.0.0.1:18181 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!); spid=$!
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
head -c 4096 /dev/urandom >"$work/small.bin"
$ota publish --server http://127.0.0.1:18181 --key "$key" --package org.example.app \
  --pkg-version 1.4.2 --branch stable "$work/small.bin" >/dev/null 2>&1
curl -sf 'http://127.0.0.1:18181/maxVersion?package=org.example.app&branch=stable' >"$work/max.json"

# --- nginx serving the same bytes ---
mkdir -p "$work/www" "$work/nginx"
cp "$work/max.json" "$work/www/maxVersion.json"
head -c $((1 << 30)) /dev/urandom >"$work/www/big.bin"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:18182; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
sleep 0.5

rps() { wrk -t2 -c64 -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
rps_pinned() { taskset -c 1 wrk -t1 -c64 -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
max() { echo "$1 $2" | awk '{print ($1>$2)?$1:$2}'; }
# The machine is shared and wrk shares its 2 cores: interleave three rounds
# and keep each side's best.
ours_rps=0; nginx_rps=0
for _ in 1 2 3; do
  ours_rps=$(max "$ours_rps" "$(rps 'http://127.0.0.1:18181/maxVersion?package=org.example.app&branch=stable')")
  nginx_rps=$(max "$nginx_rps" "$(rps 'http://127.0.0.1:18182/maxVersion.json')")
done
# Pinned: each server on core 0 with one worker (nginx: 1 process; ota: 1
# tokio worker), wrk on core 1, so the servers no longer fight wrk for cores.
TOKIO_WORKER_THREADS=1 taskset -c 0 $ota serve --data "$work/data2" --listen 127.0.0.1:18183 >"$work/serve2.out" 2>/dev/null &
pids+=($!)
sed -e 's/worker_processes auto;/worker_processes 1;/' -e 's/18182/18184/' -e "s#nginx.pid#nginx2.pid#" "$work/nginx/nginx.conf" >"$work/nginx/nginx2.conf"
taskset -c 0 nginx -c "$work/nginx/nginx2.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/serve2.out" 2>/dev/null && break; sleep 0.1; done
key2=$($ota keys create bench --data "$work/data2")
$ota publish --server http://127.0.0.1:18183 --key "$key2" --package org.example.app \
  --pkg-version 1.4.2 --branch stable "$work/small.bin" >/dev/null 2>&1
ours_pin=0; nginx_pin=0
for _ in 1 2 3; do
  ours_pin=$(max "$ours_pin" "$(rps_pinned 'http://127.0.0.1:18183/maxVersion?package=org.example.app&branch=stable')")
  nginx_pin=$(max "$nginx_pin" "$(rps_pinned 'http://127.0.0.1:18184/maxVersion.json')")
done

# --- 1 GiB upload: peak RSS of the server process (VmHWM) ---
rss_before=$(awk '/VmHWM/ {print $2}' /proc/$spid/status)
/usr/bin/time -f %e -o "$work/up.time" $ota publish --server http://127.0.0.1:18181 --key "$key" \
  --package big --pkg-version 1 "$work/www/big.bin" >/dev/null 2>&1
rss_peak=$(awk '/VmHWM/ {print $2}' /proc/$spid/status)
up_s=$(cat "$work/up.time")

# --- 1 GiB download throughput (best of 3, to /dev/null) ---
h=$(sha256sum "$work/www/big.bin" | cut -c1-64)
best() { local b=0; for _ in 1 2 3; do s=$(curl -s -o /dev/null -w '%{speed_download}' "$1"); b=$(echo "$s $b" | awk '{print ($1>$2)?$1:$2}'); done; echo "$b"; }
ours_dl=$(best "http://127.0.0.1:18181/otafiles/$h")
nginx_dl=$(best "http://127.0.0.1:18182/big.bin")

printf '\n| measure | ota | nginx | ratio |\n|---|---:|---:|---:|\n'
printf '| GET /maxVersion req/s (%s B body, wrk -t2 -c64 %ss, best of 3 interleaved) | %.0f | %.0f | %.2f |\n' "$(stat -c %s "$work/max.json")" "$secs" "$ours_rps" "$nginx_rps" "$(echo "$ours_rps $nginx_rps" | awk '{print $1/$2}')"
printf '| GET /maxVersion req/s, pinned: server on core 0 (1 worker), wrk -t1 -c64 on core 1, best of 3 | %.0f | %.0f | %.2f |\n' "$ours_pin" "$nginx_pin" "$(echo "$ours_pin $nginx_pin" | awk '{print $1/$2}')"
printf '| 1 GiB download, MB/s (best of 3) | %.0f | %.0f | %.2f |\n' "$(echo "$ours_dl" | awk '{print $1/1e6}')" "$(echo "$nginx_dl" | awk '{print $1/1e6}')" "$(echo "$ours_dl $nginx_dl" | awk '{print $1/$2}')"
printf '| 1 GiB upload: server peak RSS MB (before: %s) | %.0f | – | – |\n' "$(echo "$rss_before" | awk '{printf "%.0f", $1/1024}')" "$(echo "$rss_peak" | awk '{print $1/1024}')"
printf '| 1 GiB upload wall time s (ota publish, hash + send) | %s | – | – |\n' "$up_s"
