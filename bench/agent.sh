#!/usr/bin/env bash
# The device agent, in one run against a local `ota serve` (release builds):
#   1. peak RSS and time of `ota agent --once` installing a 1 GiB full
#      package (a single file), against curl + sha256sum doing the same
#      download and check;
#   2. peak RSS and time installing a ~30 MB delta bundle (a 100 MB tree,
#      three of its ten 10 MB files replaced), against the full update of
#      the same version change (the tree's tar.gz), bytes and time;
#   3. CPU time per check cycle of an idle, up-to-date agent (poll_interval
#      1 s for 20 s, utime+stime from /proc).
# Usage: bench/agent.sh [FULL_MIB]
set -euo pipefail
full_mib=${1:-1024}
cd "$(dirname "$0")/.."
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release -q -p ota-cli
ota=$PWD/target/release/ota
work=$(mktemp -d /var/tmp/ota-agent-bench.XXXXXX); chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port=18291
base=http://127.0.0.1:$port
key=$($ota keys create bench --scope admin --data "$work/data" 2>/dev/null)
$ota serve --data "$work/data" --listen 127.0.0.1:$port --pack-workers 1 --pack-level 3 \
  >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
$ota keys signing-public --data "$work/data" >"$work/server.pem"
token=$($ota devices add bench-device --server $base --key "$key" 2>/dev/null)

publish() { # package version file
  printf '{"package":"%s","version":"%s"}' "$1" "$2" >"$work/content.json"
  $ota publish --server $base --key "$key" --content "$work/content.json" "$3" >/dev/null
}
config() { # file package version local
  cat >"$1" <<JSON
{"device":"bench-device","public_key":"$work/server.pem","device_token":"$token",
 "state_dir":"$work/state-$2","package":[{"package":"$2","version":"$3","local":"$4","remote":"$base"}]}
JSON
}
# Runs the agent once; prints "seconds peak_rss_kib".
measure() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/run.err" || { cat "$work/run.err"; exit 1; }
  cat "$work/time"
}

echo "== 1. full package, ${full_mib} MiB single file"
head -c $((full_mib * 1048576)) /dev/urandom >"$work/big.bin"
publish big 1.0 "$work/big.bin"
mkdir -p "$work/dev"; echo old >"$work/dev/big"
config "$work/big.json" big 0.1 "$work/dev/big"
read -r secs rss < <(measure $ota agent --once --config "$work/big.json")
cmp -s "$work/big.bin" "$work/dev/big" || { echo "full install differs"; exit 1; }
echo "ota agent: ${secs}s, peak RSS $((rss / 1024)) MiB"
sha=$(sha256sum "$work/big.bin" | cut -d' ' -f1)
read -r csecs crss < <(measure sh -c "curl -sf -o '$work/curl.bin' $base/otafiles/$sha && sha256sum '$work/curl.bin' >/dev/null")
echo "curl + sha256sum: ${csecs}s, peak RSS $((crss / 1024)) MiB"
rm -f "$work/curl.bin" "$work/big.bin" "$work/dev/big"

echo "== 2. delta vs full, 100 MB tree, 30 MB changed"
mkdir -p "$work/t1"
for i in $(seq 0 9); do head -c 10485760 /dev/urandom >"$work/t1/f$i"; done
cp -a "$work/t1" "$work/t2"
for i in 0 4 7; do head -c 10485760 /dev/urandom >"$work/t2/f$i"; done
tar czf "$work/t1.tar.gz" -C "$work/t1" .
tar czf "$work/t2.tar.gz" -C "$work/t2" .
publish tree 1.0 "$work/t1.tar.gz"
publish tree 2.0 "$work/t2.tar.gz"
for _ in $(seq 600); do
  r=$(curl -s -X POST $base/api/v1/update/request -d '{"Request":"Yes","name":"tree","version":"1.0","type":"default"}')
  echo "$r" | grep -q '"Destination":"2.0"' && break; sleep 0.5
done
cp -a "$work/t1" "$work/dev/tree-delta"
config "$work/delta.json" tree 1.0 "$work/dev/tree-delta"
read -r dsecs drss < <(measure $ota agent --once --config "$work/delta.json")
dbytes=$(grep -o 'installed (delta, [0-9]* bytes' "$work/run.err" | grep -o '[0-9]*' | head -1)
[ "$($ota digest "$work/dev/tree-delta")" = "$($ota digest "$work/t2")" ] || { echo "delta install differs"; exit 1; }
echo "delta: ${dbytes} bytes, ${dsecs}s, peak RSS $((drss / 1024)) MiB"
# The same change as a full package: a device whose version the server does not know.
cp -a "$work/t1" "$work/dev/tree-full"
config "$work/full.json" tree 0.9 "$work/dev/tree-full"
read -r fsecs frss < <(measure $ota agent --once --config "$work/full.json")
fbytes=$(grep -o 'installed (full, [0-9]* bytes' "$work/run.err" | grep -o '[0-9]*' | head -1)
[ "$($ota digest "$work/dev/tree-full")" = "$($ota digest "$work/t2")" ] || { echo "full install differs"; exit 1; }
echo "full:  ${fbytes} bytes, ${fsecs}s, peak RSS $((frss / 1024)) MiB"
python3 -c "print('delta/full: bytes %.3f, time %.2f' % ($dbytes/$fbytes, $dsecs/$fsecs))"

echo "== 3. idle check cycles"
sed -i 's/"device":"bench-device",/"device":"bench-device","poll_interval":1,/' "$work/delta.json"
$ota agent --config "$work/delta.json" 2>"$work/idle.err" &
apid=$!; pids+=($apid)
sleep 20
read -r ut st < <(awk '{print $14, $15}' /proc/$apid/stat)
cycles=$(grep -c '"message":"downloading"\|check' "$work/idle.err" || true)
kill -TERM $apid; wait $apid 2>/dev/null || true
tick=$(getconf CLK_TCK)
python3 -c "print('idle agent: %.1f ms CPU per cycle (%.2f s CPU over ~20 cycles at poll_interval 1 s)' % (($ut+$st)*1000/$tick/20, ($ut+$st)/$tick))"
