#!/usr/bin/env bash
# Runs README.md's "Quick start" block exactly as written (the first ```sh
# block under that heading), in a fresh shell from the repository root, and
# checks what its last request printed. Used by scripts/test.
set -euo pipefail
cd "$(dirname "$0")/.."
block=$(awk '
  /^## Quick start/ { in_section = 1; next }
  in_section && /^## / { exit }
  in_section && /^```sh$/ { in_block = 1; next }
  in_block && /^```$/ { exit }
  in_block { print }
' README.md)
[ -n "$block" ] || { echo "no sh block under '## Quick start' in README.md" >&2; exit 1; }
if curl -s -o /dev/null http://127.0.0.1:8080/healthz; then
  echo "port 8080 is in use; the quick start needs it (stop what listens there)" >&2
  exit 1
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "running README.md's quick start:"
printf '%s\n' "$block" | sed 's/^/  | /'
# A non-interactive bash, as a user pasting into a script would run it.
if ! bash -euo pipefail -c "$block" >"$out" 2>&1; then
  cat "$out" >&2
  echo "README quick start failed" >&2
  exit 1
fi
if ! grep -qx 'hello from 1.4.2' "$out" || ! grep -q 'kiosk-7 .* success .* org.example.app 1.4.2' "$out"; then
  cat "$out" >&2
  echo "README quick start: the agent did not install 1.4.2 and report it" >&2
  exit 1
fi
last=$(grep '^{' "$out" | tail -n 1)
for want in '"package":"org.example.app"' '"version":"1.4.2"' '"branch":"stable"' \
            '"remote":"http://127.0.0.1:8080/otafiles/'; do
  if [[ $last != *"$want"* ]]; then
    cat "$out" >&2
    echo "README quick start: the last answer lacks $want" >&2
    exit 1
  fi
done
echo "README quick start: ok"
