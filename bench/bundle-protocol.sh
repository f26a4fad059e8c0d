#!/usr/bin/env bash
# The bundle protocol (request/confirm, skip-list packs), in one run:
#   1. bytes shipped for random from→to pairs over a 30-version history of a
#      realistic tree (real ELF binaries drifting, text, renames, deletions,
#      modes, symlinks), against a full download of the target archive and
#      against the single direct delta from→to (`ota diff`, same level);
#   2. time from publishing one new version of a ~50 MB tree to the moment
#      it is a delta destination (both packs of every new edge built);
#   3. POST /api/v1/update/request requests/s against nginx serving a static
#      JSON answer of the same size (wrk, best of 3 interleaved).
# Usage: bench/bundle-protocol.sh [SECONDS_PER_WRK_RUN] [PAIRS]
set -euo pipefail
secs=${1:-10}
pairs=${2:-20}
cd "$(dirname "$0")/.."
need=()
for t in nginx wrk curl python3 jq; do command -v $t >/dev/null || need+=($t); done
if [ ${#need[@]} -gt 0 ]; then apt-get update -qq && apt-get install -y -qq nginx wrk curl python3 jq >/dev/null; fi
cargo build --release -q -p ota-cli
ota=$PWD/target/release/ota
work=$(mktemp -d /var/tmp/ota-bench.XXXXXX); chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
port=18191
base=http://127.0.0.1:$port
key=$($ota keys create bench --scope admin --data "$work/data" 2>/dev/null)
$ota serve --data "$work/data" --listen 127.0.0.1:$port --pack-workers 1 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
$ota keys signing-public --data "$work/data" >"$work/signing.pem"

# Versions of a tree: python writes version I of a tree grown from BASE.
cat >"$work/gen.py" <<'PY'
import os, random, shutil, stat, sys
base, out, i = sys.argv[1], sys.argv[2], int(sys.argv[3])
shutil.copytree(base, out, symlinks=True)
files = sorted(os.path.join(d, f) for d, _, fs in os.walk(out) for f in fs
               if not os.path.islink(os.path.join(d, f)))
for v in range(1, i + 1):
    r = random.Random(v)
    for p in r.sample(files, max(1, len(files) // 20)):       # rebuilt binaries
        b = bytearray(open(p, 'rb').read())
        for _ in range(16):
            if len(b) > 64:
                k = r.randrange(64, len(b)); b[k] = (b[k] + v) % 256
        open(p, 'wb').write(bytes(b))
    if r.random() < 0.3 and len(files) > 10:                   # a deletion
        victim = files.pop(r.randrange(len(files)))
        if os.path.exists(victim): os.remove(victim)
    if r.random() < 0.3 and files:                             # a rename
        k = r.randrange(len(files)); src = files[k]
        if os.path.exists(src):
            dst = src + '.v%d' % v; os.rename(src, dst); files[k] = dst
    if r.random() < 0.2 and files:                             # a mode change
        p = r.choice(files)
        if os.path.exists(p): os.chmod(p, 0o700)
with open(os.path.join(out, 'VERSION'), 'w') as f: f.write('%d\n' % i)
with open(os.path.join(out, 'CHANGELOG'), 'w') as f:
    f.write(''.join('release %d: fixes\n' % v for v in range(i + 1)))
link = os.path.join(out, 'current')
if os.path.lexists(link): os.remove(link)
os.symlink('VERSION' if i % 2 else 'CHANGELOG', link)
PY
wait_ready() { # package version
  for _ in $(seq 3000); do
    n=$(curl -sf "$base/api/v1/packages/$1/branches/main/deltas" | jq -r .newest)
    [ "$n" = "$2" ] && return 0
    sleep 0.1
  done
  echo "version $2 of $1 never became ready" >&2; return 1
}
publish() { # package version dir
  tar -C "$3" -czf "$work/pkg.tgz" .
  $ota publish --server $base --key "$key" --package "$1" --pkg-version "$2" "$work/pkg.tgz" >/dev/null 2>&1
}

# --- 1. bytes shipped over a 30-version history ---
mkdir -p "$work/base/bin" "$work/base/lib"
for b in /usr/bin/{tar,grep,sed,find,ls,cat,cp,mv,gzip,diff}; do [ -f "$b" ] && cp "$b" "$work/base/bin/"; done
ls /usr/lib/x86_64-linux-gnu/lib{z,zstd,lzma,bz2}.so.* 2>/dev/null | head -4 | xargs -r -I{} cp -L {} "$work/base/lib/"
for i in $(seq 0 29); do
  python3 "$work/gen.py" "$work/base" "$work/v/1.0.$i" "$i"
  tar -C "$work/v/1.0.$i" -czf "$work/full-1.0.$i.tgz" .
  publish hist "1.0.$i" "$work/v/1.0.$i"
done
wait_ready hist 1.0.29
packs=$(curl -sf "$base/api/v1/packages/hist/branches/main/deltas" | jq .packs)
tree_mb=$(du -sm "$work/v/1.0.29" | cut -f1)
shipped=0; fullb=0; direct=0; hops=0
for k in $(seq "$pairs"); do
  a=$(( (k * 7919) % 30 )); b=$(( (k * 104729 + 13) % 30 )); [ $a = $b ] && b=$(( (b + 1) % 30 ))
  if [ $b -gt $a ]; then list=update; else list=rollback; fi
  printf '[{"name":"hist","%s":[{"strategy":"compulsory","condition":{"version":{"compare":"==","value":"1.0.%s"}},"dest":"1.0.%s"}]}]' \
    $list $a $b >"$work/s.json"
  curl -sf -X PUT -H "authorization: Bearer $key" --data-binary @"$work/s.json" "$base/api/v1/strategies"
  act=$([ $list = update ] && echo Update || echo Rollback)
  curl -sf -o "$work/b.tgz" -H 'content-type: application/json' \
    -d "{\"Confirm\":\"Yes\",\"Action\":\"$act\",\"Strategy\":\"Compulsory\",\"From\":\"1.0.$a\",\"Destination\":\"1.0.$b\",\"name\":\"hist\",\"type\":\"x\"}" \
    "$base/api/v1/update/confirm"
  n=$(tar -tzf "$work/b.tgz" | grep -c '_sig$')
  $ota diff "$work/v/1.0.$a" "$work/v/1.0.$b" "$work/direct.patch" >/dev/null 2>&1
  shipped=$((shipped + $(stat -c %s "$work/b.tgz")))
  fullb=$((fullb + $(stat -c %s "$work/full-1.0.$b.tgz")))
  direct=$((direct + $(stat -c %s "$work/direct.patch")))
  hops=$((hops + n))
done

# --- 2. publish → delta-ready for a ~50 MB tree ---
mkdir -p "$work/big0"
cp -r "$work/base" "$work/big0/base"
for d in /usr/lib/x86_64-linux-gnu /usr/bin; do
  find "$d" -maxdepth 1 -type f -size +100k -size -4M 2>/dev/null | sort | while read -r f; do
    s=$(du -sm "$work/big0" | cut -f1); [ "$s" -ge 50 ] && break
    cp "$f" "$work/big0/" 2>/dev/null || true
  done
done
big_mb=$(du -sm "$work/big0" | cut -f1)
python3 "$work/gen.py" "$work/big0" "$work/big1" 1
publish big 1.0.0 "$work/big0"
wait_ready big 1.0.0
t0=$(date +%s%N)
publish big 1.0.1 "$work/big1"
t_pub=$(date +%s%N)
wait_ready big 1.0.1
t1=$(date +%s%N)
ready_s=$(awk "BEGIN{printf \"%.1f\", ($t1-$t0)/1e9}")
pub_s=$(awk "BEGIN{printf \"%.1f\", ($t_pub-$t0)/1e9}")
big_pack=$(curl -sf "$base/api/v1/packages/big/branches/main/deltas" | jq .pack_bytes)

# --- 3. request rate vs nginx serving the same answer ---
echo '[]' >"$work/s.json"
curl -sf -X PUT -H "authorization: Bearer $key" --data-binary @"$work/s.json" "$base/api/v1/strategies"
body='{"Request":"Yes","name":"hist","version":"1.0.3","type":"x"}'
curl -sf -H 'content-type: application/json' -d "$body" "$base/api/v1/update/request" >"$work/answer.json"
mkdir -p "$work/www" "$work/nginx"
cp "$work/answer.json" "$work/www/answer.json"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes auto;
user root;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off; keepalive_requests 1000000;
  default_type application/json;
  server { listen 127.0.0.1:18192; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
pids+=($!)
sleep 0.5
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA
rps() { wrk -t2 -c64 -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
max() { echo "$1 $2" | awk '{print ($1>$2)?$1:$2}'; }
ours=0; ng=0
for _ in 1 2 3; do
  ours=$(max "$ours" "$(rps -s "$work/post.lua" "$base/api/v1/update/request")")
  ng=$(max "$ng" "$(rps http://127.0.0.1:18192/answer.json)")
done

printf '\n| measure | value |\n|---|---:|\n'
printf '| history: 30 versions of a %s MB tree, packs stored | %s (%.2f per version) |\n' "$tree_mb" "$packs" "$(echo "$packs" | awk '{print $1/30}')"
printf '| %s random pairs (both ways): bundle bytes shipped | %s |\n' "$pairs" "$(printf "%'d" $shipped)"
printf '| same pairs: full download of the target (tar.gz) | %s (bundles are %.1f %%) |\n' "$(printf "%'d" $fullb)" "$(echo "$shipped $fullb" | awk '{print 100*$1/$2}')"
printf '| same pairs: single direct delta from→to (ota diff) | %s (bundles are %.2f×) |\n' "$(printf "%'d" $direct)" "$(echo "$shipped $direct" | awk '{print $1/$2}')"
printf '| packs per bundle (mean) | %.2f |\n' "$(echo "$hops $pairs" | awk '{print $1/$2}')"
printf '| publish → delta-ready, one new version of a %s MB tree (upload %s s) | %s s (pack bytes %s) |\n' "$big_mb" "$pub_s" "$ready_s" "$(printf "%'d" "$big_pack")"
printf '| POST /api/v1/update/request req/s (%s B answer) vs nginx static file | %.0f vs %.0f (%.2f) |\n' "$(stat -c %s "$work/answer.json")" "$ours" "$ng" "$(echo "$ours $ng" | awk '{print $1/$2}')"
