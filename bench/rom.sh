#!/usr/bin/env bash
# Benchmarks the ROM server's client APIs against nginx serving a static
# JSON file of the same size, in one run on this machine:
#   1. POST /api (CMUpdater get_all_builds, the app's exact body, no
#      Content-Type) requests/s vs nginx GET of a file as large as the answer;
#   2. GET /api/v1/<device>/<romtype>/<incremental> (LineageOS Updater)
#      requests/s vs nginx GET of a file as large as that answer.
# wrk -t2 -c64 on loopback, sharing the machine's cores with the servers;
# three interleaved rounds, best of each kept.
# The builds are 20 nightlies of one device: minimal OTA zips (metadata,
# build.prop, 256 KiB of payload) published with `ota publish android`.
# Usage: bench/rom.sh [SECONDS_PER_WRK_RUN]   (needs root for apt-get if tools are missing)
set -euo pipefail
secs=${1:-10}
cd "$(dirname "$0")/.."
need=()
for t in nginx wrk curl python3; do command -v $t >/dev/null || need+=($t); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq nginx wrk curl python3 >/dev/null; fi
cargo build --release -q -p ota-cli
ota=target/release/ota
work=$(mktemp -d /var/tmp/ota-bench.XXXXXX); chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# --- 20 builds of "bacon" on nightly ---
mkdir -p "$work/pkgs"
python3 - "$work/pkgs" <<'PY'
import os, sys, zipfile
out = sys.argv[1]
for n in range(1, 21):
    inc, ts = f"eng.{1000 + n}", 1_700_000_000 + n * 86_400
    fp = f"oneplus/bacon/bacon:11/RKQ1/{inc}:user/release-keys"
    with zipfile.ZipFile(f"{out}/lineage-18.1-{n:02d}-nightly-bacon.zip", "w") as z:
        z.writestr("META-INF/com/android/metadata",
                   f"ota-type=FILE\npost-build={fp}\npost-build-incremental={inc}\n"
                   f"post-timestamp={ts}\npre-device=bacon\n")
        z.writestr("system/build.prop",
                   f"ro.product.device=bacon\nro.product.model=One\nro.product.brand=oneplus\n"
                   f"ro.build.version.incremental={inc}\nro.build.date.utc={ts}\n"
                   f"ro.build.fingerprint={fp}\nro.build.version.sdk=30\n"
                   f"ro.lineage.build.version=18.1\nro.lineage.releasetype=NIGHTLY\n")
        z.writestr("system/payload.bin", os.urandom(256 * 1024))
PY
key=$($ota keys create bench --scope 'publish:rom.*' --data "$work/data")
$ota serve --data "$work/data" --listen 127.0.0.1:18281 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
base=http://127.0.0.1:18281
for f in "$work"/pkgs/*.zip; do
  $ota publish android --server $base --key "$key" --device bacon --channel nightly "$f" >/dev/null 2>&1
done
cm_body='{"method":"get_all_builds","params":{"device":"bacon","channels":["nightly"],"source_incremental":"eng.1001"}}'
curl -sf -X POST -H 'Content-Type:' --data-binary "$cm_body" "$base/api" >"$work/cm.json"
lineage_path=/api/v1/bacon/nightly/eng.1001
curl -sf "$base$lineage_path" >"$work/lineage.json"
cm_n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["result"]))' "$work/cm.json")
lo_n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["response"]))' "$work/lineage.json")

# --- nginx serving files of the same sizes ---
mkdir -p "$work/www" "$work/nginx"
cp "$work/cm.json" "$work/www/cm.json"
cp "$work/lineage.json" "$work/www/lineage.json"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:18282; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
sleep 0.5
# The app's request: POST, its JSON body, no Content-Type.
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$cm_body'
wrk.headers["Content-Type"] = nil
LUA
rps() { wrk -t2 -c64 -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
max() { echo "$1 $2" | awk '{print ($1>$2)?$1:$2}'; }
cm=0; cm_ng=0; lo=0; lo_ng=0
for _ in 1 2 3; do
  cm=$(max "$cm" "$(rps -s "$work/post.lua" "$base/api")")
  cm_ng=$(max "$cm_ng" "$(rps http://127.0.0.1:18282/cm.json)")
  lo=$(max "$lo" "$(rps "$base$lineage_path")")
  lo_ng=$(max "$lo_ng" "$(rps http://127.0.0.1:18282/lineage.json)")
done

printf '\n| measure (wrk -t2 -c64 %ss, best of 3 interleaved) | ota | nginx static file | ratio |\n|---|---:|---:|---:|\n' "$secs"
printf '| POST /api get_all_builds, %s builds, %s B answer | %.0f | %.0f | %.2f |\n' "$cm_n" "$(stat -c %s "$work/cm.json")" "$cm" "$cm_ng" "$(echo "$cm $cm_ng" | awk '{print $1/$2}')"
printf '| GET %s, %s builds, %s B answer | %.0f | %.0f | %.2f |\n' "$lineage_path" "$lo_n" "$(stat -c %s "$work/lineage.json")" "$lo" "$lo_ng" "$(echo "$lo $lo_ng" | awk '{print $1/$2}')"
