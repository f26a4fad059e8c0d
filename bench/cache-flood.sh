#!/usr/bin/env bash
# /maxVersion for published packages (KNOWN of them, requested at random)
# while a second client floods the server with requests for names that do
# not exist (each one a catalogue miss), compared with the same measurement
# without the flood, in one run. Before the hot-answer cache kept misses
# apart, 20,000 distinct unknown names emptied it and every device's answer
# went back to the database.
#
# Usage: bench/cache-flood.sh [SECONDS] [KNOWN]   (needs wrk: apt-get install wrk)
# OTA_BIN=path/to/ota measures another build (e.g. an older release).
set -euo pipefail
secs=${1:-10}
known_n=${2:-2000}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "${OTA_BIN:-}" ]; then cargo build --release -q -p ota-cli; fi
ota=${OTA_BIN:-$PWD/target/release/ota}
work=$(mktemp -d /var/tmp/ota-flood.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

key=$($ota keys create bench --data "$work/data" 2>/dev/null)
$ota serve --data "$work/data" --listen 127.0.0.1:18191 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
head -c 4096 /dev/urandom >"$work/small.bin"
sha=$(sha256sum "$work/small.bin" | cut -c1-64)
for i in $(seq 1 "$known_n"); do
  curl -sf -o /dev/null -X PUT http://127.0.0.1:18191/update -H "Authorization: Bearer $key" \
    -F "content={\"package\":\"known$i\",\"branch\":\"stable\",\"version\":\"1.4.2\",\"sha256\":\"$sha\"}" \
    -F "file=@$work/small.bin"
done
cat >"$work/known.lua" <<LUA
request = function()
  return wrk.format("GET", "/maxVersion?package=known" .. math.random(1, $known_n) .. "&branch=stable")
end
LUA

# Every flood request names a package never seen before.
cat >"$work/flood.lua" <<'LUA'
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/maxVersion?package=unknown" .. math.random(1, 1e9) .. "x" .. n .. "&branch=main")
end
LUA

measure() { # prints "req/s p99"
  wrk -t1 -c32 -d"${secs}s" --latency -s "$work/known.lua" http://127.0.0.1:18191 |
    awk '/Requests\/sec/ {r=$2} /^ +99%/ {p=$2} END {print r, p}'
}
alone=$(measure)
wrk -t1 -c32 -d"$((secs + 2))s" -s "$work/flood.lua" http://127.0.0.1:18191 >"$work/flood.out" &
fpid=$!
sleep 1
flooded=$(measure)
wait "$fpid" || true
flood_rps=$(awk '/Requests\/sec/ {print $2}' "$work/flood.out")

echo "$known_n known package branches, requested at random"
echo "| measure | /maxVersion req/s | p99 latency |"
echo "|---|---:|---:|"
echo "| alone | ${alone% *} | ${alone#* } |"
echo "| during a flood of unknown names ($flood_rps req/s of misses) | ${flooded% *} | ${flooded#* } |"
