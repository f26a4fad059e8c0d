#!/usr/bin/env bash
# Delta benchmark: the own format (and our BSDIFF40 writer) against Debian's
# bsdiff 4.3, xdelta3 and zstd --patch-from, on the release pairs that
# ../shared/bench/fetch-corpus.sh downloads, all in one run on this machine.
# Directory pairs are compared with the peers run on tarballs of the trees.
# Usage: bench/delta.sh [CORPUS_DIR] [RUNS]   (prints a markdown table)
# Times are the best of RUNS (default 3) runs: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-${OTA_CORPUS:-/var/tmp/ota-corpus}}
runs=${2:-3}
for t in bsdiff xdelta3 zstd /usr/bin/time; do
  command -v $t >/dev/null || { apt-get update -qq >/dev/null; apt-get install -y -qq bsdiff xdelta3 zstd time >/dev/null; break; }
done
cargo build --release -q -p ota-cli
ota=$PWD/target/release/ota
pairs=$(bash ../shared/bench/fetch-corpus.sh "$corpus")
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# HDiffPatch 4.12 (../shared/bench/peers, built from its sources), with the
# options of ../shared/bench/BASELINES.md; its rows are skipped without it.
peers=${OTA_PEERS:-$PWD/../shared/bench/peers}
hdiff() { [ -x "$peers/hdiffz" ] && [ -x "$peers/hpatchz" ]; }

# best CMD...: runs CMD $runs times; the best wall time (ns clock) and its peak RSS.
best() {
  local b_s=999999 b_kb=0
  for _ in $(seq "$runs"); do
    rm -rf "$tmp/out"
    local t0 t1
    t0=$(date +%s%N)
    /usr/bin/time -f "%M" -o "$tmp/t" "$@" >/dev/null 2>&1 || { echo "FAILED: $*" >&2; echo "nan 0"; return; }
    t1=$(date +%s%N)
    s=$(awk "BEGIN{printf \"%.3f\", ($t1-$t0)/1e9}"); read -r kb <"$tmp/t"
    if awk "BEGIN{exit !($s < $b_s)}"; then b_s=$s; b_kb=$kb; fi
  done
  echo "$b_s $b_kb"
}
row() { # tool patch diff_s diff_kb apply_s apply_kb
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(printf "%'d" "$2")" "$3" "$(( $4 / 1024 ))" "$5" "$(( $6 / 1024 ))"
}
measure() { # name old new
  local name=$1 old=$2 new=$3 ds dk as ak
  echo; echo "### $name"; echo
  echo '| tool | patch bytes | diff s | diff MB | apply s | apply MB |'
  echo '|---|---:|---:|---:|---:|---:|'
  read -r ds dk < <(best bsdiff "$old" "$new" "$tmp/p")
  read -r as ak < <(best bspatch "$old" "$tmp/out" "$tmp/p"); cmp -s "$tmp/out" "$new" || echo "bspatch output differs" >&2
  row "bsdiff 4.3" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"; bs=$(stat -c %s "$tmp/p"); bs_s=$ds
  read -r ds dk < <(best xdelta3 -9 -f -e -s "$old" "$new" "$tmp/p")
  read -r as ak < <(best xdelta3 -f -d -s "$old" "$tmp/p" "$tmp/out"); cmp -s "$tmp/out" "$new" || echo "xdelta3 output differs" >&2
  row "xdelta3 -9" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"
  read -r ds dk < <(best zstd -q -f --ultra -19 --long=31 --patch-from="$old" "$new" -o "$tmp/p")
  read -r as ak < <(best zstd -q -f -d --long=31 --patch-from="$old" "$tmp/p" -o "$tmp/out"); cmp -s "$tmp/out" "$new" || echo "zstd output differs" >&2
  row "zstd -19 --long=31 --patch-from" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"
  if hdiff; then
    read -r ds dk < <(best "$peers/hdiffz" -m -p-2 -c-zstd-21-24 -f "$old" "$new" "$tmp/p")
    read -r as ak < <(best "$peers/hpatchz" -f "$old" "$tmp/p" "$tmp/out"); cmp -s "$tmp/out" "$new" || echo "hpatchz output differs" >&2
    row "HDiffPatch 4.12 (hdiffz -m -p-2 -c-zstd-21-24)" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"
    hd=$(stat -c %s "$tmp/p"); hd_s=$ds; hd_as=$as
  fi
  read -r ds dk < <(best "$ota" diff --format bsdiff40 "$old" "$new" "$tmp/p")
  read -r as ak < <(best bspatch "$old" "$tmp/out" "$tmp/p"); cmp -s "$tmp/out" "$new" || echo "ota bsdiff40 output differs" >&2
  row "ota diff --format bsdiff40 (applied by bspatch)" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"
  # --exe-rounds 0: the plain byte-level diff; 2: one more executable-aware round.
  for rounds in 0 2; do
    read -r ds dk < <(best "$ota" diff --exe-rounds $rounds "$old" "$new" "$tmp/p")
    read -r as ak < <(best "$ota" patch "$old" "$tmp/p" "$tmp/out"); cmp -s "$tmp/out" "$new" || echo "ota output differs" >&2
    row "ota --exe-rounds $rounds ($(head -c 8 "$tmp/p"))" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"
  done
  read -r ds dk < <(best "$ota" diff "$old" "$new" "$tmp/p")
  read -r as ak < <(best "$ota" patch "$old" "$tmp/p" "$tmp/out"); cmp -s "$tmp/out" "$new" || echo "ota output differs" >&2
  row "**ota, default ($(head -c 8 "$tmp/p"))**" "$(stat -c %s "$tmp/p")" "$ds" "$dk" "$as" "$ak"
  ours=$(stat -c %s "$tmp/p")
  read -r as ak < <(best "$ota" patch --no-sync "$old" "$tmp/p" "$tmp/out")
  row "ota patch --no-sync (no fsync, as bspatch)" "$ours" "–" 0 "$as" "$ak"
  echo; echo "ota/bsdiff: size $(awk "BEGIN{printf \"%.3f\", $ours/$bs}"), diff time $(awk "BEGIN{printf \"%.3f\", $ds/$bs_s}")"
  if hdiff; then
    echo; echo "ota/HDiffPatch: size $(awk "BEGIN{printf \"%.3f\", $ours/$hd}"), diff time $(awk "BEGIN{printf \"%.3f\", $ds/$hd_s}"), apply time without fsync $(awk "BEGIN{printf \"%.3f\", $as/$hd_as}")"
  fi
}
measure_tree() { # name olddir newdir
  local name=$1 old=$2 new=$3 ds dk as ak
  tar -C "$old" -cf "$tmp/old.tar" . ; tar -C "$new" -cf "$tmp/new.tar" .
  measure "$name (peers on the two tarballs)" "$tmp/old.tar" "$tmp/new.tar" | grep -v '^| ota'
  if hdiff; then
    read -r ds dk < <(best "$peers/hdiffz" -m -p-2 -c-zstd-21-24 -f "$old" "$new" "$tmp/hp")
    read -r as ak < <(best "$peers/hpatchz" -f "$old" "$tmp/hp" "$tmp/out")
    diff -r "$tmp/out" "$new" >/dev/null || echo "hpatchz tree output differs" >&2
    row "HDiffPatch 4.12, directory mode" "$(stat -c %s "$tmp/hp")" "$ds" "$dk" "$as" "$ak"
  fi
  read -r ds dk < <(best "$ota" diff "$old" "$new" "$tmp/tp")
  read -r as ak < <(best "$ota" patch "$old" "$tmp/tp" "$tmp/out")
  diff -r "$tmp/out" "$new" >/dev/null || echo "ota tree output differs" >&2
  row "**ota (OTATREE1, directory to directory)**" "$(stat -c %s "$tmp/tp")" "$ds" "$dk" "$as" "$ak"
  read -r ds dk < <(best "$ota" diff --reverse-out "$tmp/trev" "$old" "$new" "$tmp/tp")
  row "ota, forward + reverse patch in one run (reverse: $(stat -c %s "$tmp/trev") B)" "$(stat -c %s "$tmp/tp")" "$ds" "$dk" "–" 0
}
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; best of $runs runs."
while read -r name old new; do
  if [ -d "$old" ]; then measure_tree "$name" "$old" "$new"; else measure "$name" "$old" "$new"; fi
done <<<"$pairs"
