#!/usr/bin/env bash
# Several instances on shared storage, in one run on this machine:
#   1. /maxVersion requests/s (wrk -t2 -c64, keep-alive and Connection: close)
#      on one `ota serve` direct, against two instances on one PostgreSQL and
#      one Garage behind nginx with deploy/nginx.conf (ip_hash, as shipped);
#   2. publish-to-visible latency: a version published through instance A,
#      polled on instance B until B serves it (LISTEN/NOTIFY), ROUNDS times.
# Everything (PostgreSQL, Garage, nginx, both instances, wrk) shares the
# cores. Note that ip_hash sends one client address to one instance: wrk
# from 127.0.0.1 measures nginx's extra hop, not the two instances' sum.
# Usage: bench/instances.sh [ROUNDS]   (garage from ~/.cargo/bin or PATH)
set -euo pipefail
rounds=${1:-20}
cd "$(dirname "$0")/.."
need=()
for t in nginx wrk curl; do command -v $t >/dev/null || need+=($t); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq nginx wrk curl >/dev/null; fi
ota=${OTA_BIN:-target/release/ota}
[ -n "${OTA_BIN:-}" ] || cargo build --release -q -p ota-cli
work=$(mktemp -d /var/tmp/ota-bench-instances.XXXXXX); chmod 755 "$work"
pids=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -s "$work/garage/garage.pid" ] && kill "$(cat "$work/garage/garage.pid")" 2>/dev/null || true
  if [ -s "$work/pg/postmaster.pid" ]; then
    if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D '$work/pg' -m immediate stop" >/dev/null 2>&1 || true
    else "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true; fi
  fi
  sleep 0.5; rm -rf "$work"
}
trap cleanup EXIT

port=$((20000 + RANDOM % 20000))
db=$(.ci/start-postgres.sh "$work/pg" $((port + 10)))  # Garage takes PORT..PORT+2
eval "$(.ci/start-garage.sh "$work/garage" "$port")"
s3="${OTA_TEST_S3_URL/ota-test?/ota-test/instances?}"

serve() { # NAME PORT ARGS… ; waits until it listens
  local name=$1 p=$2; shift 2
  $ota serve --listen 127.0.0.1:$p "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$work/$name.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "$name did not start:" >&2; cat "$work/$name.err" >&2; exit 1
}
key=$($ota keys create bench --data "$work/a" --database "$db")
serve a 18381 --data "$work/a" --database "$db" --blobs "$s3" --url-from-request
serve b 18382 --data "$work/b" --database "$db" --blobs "$s3" --url-from-request \
  --signing-key "$work/a/signing-key.pem"  # every instance signs packs with one key

# deploy/nginx.conf as shipped, with this run's instances and port.
mkdir -p "$work/nginx"
awk -v a=127.0.0.1:18381 -v b=127.0.0.1:18382 '
  /^ *server 127\.0\.0\.1:/ { if (!done) { print "    server " a ";"; print "    server " b ";"; done = 1 } next }
  /^ *listen 80;/ { print "    listen 127.0.0.1:18380 backlog=4096;"; next }
  { print }' deploy/nginx.conf >"$work/nginx/site.conf"
grep -q 18382 "$work/nginx/site.conf" || { echo "deploy/nginx.conf lost its upstream servers" >&2; exit 1; }
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  include $work/nginx/site.conf;
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
sleep 0.5

head -c 4096 /dev/urandom >"$work/p.bin"
$ota publish --server http://127.0.0.1:18381 --key "$key" --package org.example.app \
  --pkg-version 1.0.0 "$work/p.bin" >/dev/null 2>&1
q='maxVersion?package=org.example.app&branch=main'
curl -sf "http://127.0.0.1:18380/$q" | grep -q 1.0.0 || { echo "nginx does not serve /maxVersion" >&2; exit 1; }

rps() { wrk -t2 -c64 -d8s "$@" | awk '/Requests\/sec/ {print $2}'; }
best() { local b=0 v; for _ in 1 2 3; do v=$(rps "$@"); b=$(echo "$b $v" | awk '{print ($1>$2)?$1:$2}'); done; echo "$b"; }
echo "== /maxVersion, wrk -t2 -c64, best of 3 x 8 s =="
printf '%-46s %10s\n' "one instance direct, keep-alive" "$(best "http://127.0.0.1:18381/$q")"
printf '%-46s %10s\n' "two instances behind nginx, keep-alive" "$(best "http://127.0.0.1:18380/$q")"
printf '%-46s %10s\n' "one instance direct, Connection: close" "$(best -H 'Connection: close' "http://127.0.0.1:18381/$q")"
printf '%-46s %10s\n' "two instances behind nginx, Connection: close" "$(best -H 'Connection: close' "http://127.0.0.1:18380/$q")"

echo "== publish through A, visible on B ($rounds versions) =="
lat=()
for i in $(seq 1 "$rounds"); do
  v="1.0.$i"
  $ota publish --server http://127.0.0.1:18381 --key "$key" --package org.example.app \
    --pkg-version "$v" "$work/p.bin" >/dev/null 2>&1
  t0=$(date +%s%N)
  until curl -sf "http://127.0.0.1:18382/$q" | grep -q "\"$v\""; do :; done
  lat+=($(( ($(date +%s%N) - t0) / 1000 )))
done
printf '%s\n' "${lat[@]}" | sort -n | awk '{a[NR]=$1} END {
  printf "after the publish returned, until B served it (µs, includes curl start-up ≈ a few ms): median %d, max %d\n", a[int((NR+1)/2)], a[NR] }'
