#!/usr/bin/env bash
# Incremental Android OTA generation: `ota android incremental` against a
# plain per-file bsdiff loop over the same changed files, in the same run.
#
#   bench/android.sh [MB] [FRACTION]     (default 300 MB, 0.05 changed)
#
# The system image is built from this machine's own files (/usr/lib and
# /usr/bin: real ELF binaries and libraries, scripts, data); FRACTION
# of the files get a rebuild-like change (bench: Spec::mutated). Needs bsdiff
# (apt install bsdiff) and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-300}
FRACTION=${2:-0.05}
WORK=${BENCH_DIR:-/var/tmp/ota-android-bench}
rm -rf "$WORK" && mkdir -p "$WORK"

cargo build --release -q -p ota-cli
cargo build --release -q -p ota-android --example make_target_files
OTA=$PWD/target/release/ota
./target/release/examples/make_target_files "$WORK" --large "$MB" --changed "$FRACTION" \
  /usr/lib/x86_64-linux-gnu /usr/bin
ls -l "$WORK"/large-v*.zip

timed() { # label, command…  → prints seconds and peak RSS
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null
  read -r secs kb <"$WORK/time"
  printf '%-44s %8.2f s %8d MB\n' "$label" "$secs" $((kb / 1024))
}

echo "== ota android incremental (all cores: $(nproc)), best of 2"
for i in 1 2; do
  rm -f "$WORK/inc.zip"
  timed "ota android incremental" "$OTA" android incremental --from "$WORK/large-v1.zip" "$WORK/large-v2.zip" "$WORK/inc.zip"
done
"$OTA" android incremental --from "$WORK/large-v1.zip" "$WORK/large-v2.zip" "$WORK/inc.zip"
rm -f "$WORK/inc1.zip"
timed "ota android incremental --worker-threads 1" "$OTA" android incremental --worker-threads 1 --from "$WORK/large-v1.zip" "$WORK/large-v2.zip" "$WORK/inc1.zip"

echo "== per-file bsdiff loop over the same pair"
mkdir -p "$WORK/a" "$WORK/b" "$WORK/p"
timed "unzip both target-files" bash -c "cd '$WORK/a' && unzip -q ../large-v1.zip && cd ../b && unzip -q ../large-v2.zip"
start=$(date +%s.%N)
(cd "$WORK" && { diff -rq --no-dereference a/SYSTEM b/SYSTEM || true; } | sed -n 's|^Files a/\(.*\) and b/.* differ$|\1|p') >"$WORK/changed"
end=$(date +%s.%N)
printf '%-44s %8.2f s   (%d changed files)\n' "find changed files (diff -rq)" "$(echo "$end - $start" | bc)" "$(wc -l <"$WORK/changed")"
cat >"$WORK/loop.sh" <<'LOOP'
#!/usr/bin/env bash
cd "$1"
while read -r f; do
  bsdiff "a/$f" "b/$f" "p/$(echo "$f" | tr / _).p"
done <changed
LOOP
chmod +x "$WORK/loop.sh"
timed "bsdiff loop (sequential)" "$WORK/loop.sh" "$WORK"
rm -f "$WORK"/p/*
timed "bsdiff loop (xargs -P $(nproc))" bash -c "cd '$WORK' && tr '\n' '\0' <changed | xargs -0 -P $(nproc) -I{} sh -c 'bsdiff \"a/{}\" \"b/{}\" \"p/\$(echo {} | tr / _).p\"'"
echo "== ota android incremental from the same unpacked directories"
for i in 1 2; do
  rm -f "$WORK/inc-dir.zip"
  timed "ota android incremental (directories)" "$OTA" android incremental --from "$WORK/a" "$WORK/b" "$WORK/inc-dir.zip"
done
echo "== sizes"
printf 'ota patches in the package: '; unzip -l "$WORK/inc.zip" 'patch/*' | tail -1
printf 'bsdiff loop patches:        '; cat "$WORK"/p/* | wc -c
ls -l "$WORK/inc.zip"
