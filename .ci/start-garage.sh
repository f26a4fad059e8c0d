#!/usr/bin/env bash
# Starts a throwaway single-node Garage (S3-compatible object store) for the
# test suite and prints how to reach it.
#
# Usage: .ci/start-garage.sh [DIR] [PORT]      (defaults: /tmp/ota-garage 3900)
#
# Contract: on success prints exactly ONE line on stdout, for the caller to
# eval, of the form
#   export OTA_TEST_S3_URL='s3://ota-test?endpoint=http://127.0.0.1:PORT&region=garage' AWS_ACCESS_KEY_ID='GK…' AWS_SECRET_ACCESS_KEY='…'
# and exits 0; anything else (progress, errors) goes to stderr, and a
# failure exits non-zero. The S3 API listens on 127.0.0.1:PORT, the RPC on
# PORT+1 and the admin API on PORT+2 (loopback only). Metadata, data, the
# config (garage.toml), the log (garage.log), the pid (garage.pid) and the
# line printed (env) live under DIR. Running it again while that Garage is
# up prints the same line without starting anything. Stop it with
#   kill "$(cat DIR/garage.pid)"
# The garage binary is $GARAGE, else `garage` on PATH, else ~/.cargo/bin/garage
# (.ci/run installs it with `cargo install garage --locked`).
set -euo pipefail
dir=${1:-/tmp/ota-garage}
port=${2:-3900}
bucket=ota-test
garage=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}
[ -x "$garage" ] || { echo "garage not found (cargo install garage --locked)" >&2; exit 1; }
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf="$dir/garage.toml"
g() { "$garage" -c "$conf" "$@"; }

if [ -s "$dir/env" ] && [ -s "$dir/garage.pid" ] && kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null; then
  cat "$dir/env"
  exit 0
fi

if [ ! -s "$conf" ]; then
  secret=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  token=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
  cat > "$conf" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$((port + 1))"
rpc_public_addr = "127.0.0.1:$((port + 1))"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$((port + 2))"
admin_token = "$token"
TOML
  chmod 600 "$conf"
fi

RUST_LOG=${RUST_LOG:-garage=warn} setsid "$garage" -c "$conf" server >"$dir/garage.log" 2>&1 < /dev/null &
echo $! > "$dir/garage.pid"

ready=
for _ in $(seq 1 100); do
  if g status >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$(cat "$dir/garage.pid")" 2>/dev/null || break
  sleep 0.2
done
[ -n "$ready" ] || { echo "garage did not start; its log:" >&2; tail -n 30 "$dir/garage.log" >&2; exit 1; }

node=$(g node id -q 2>/dev/null | cut -d@ -f1)
# A fresh cluster has no layout: give the node 1G and apply (version 1).
if ! g layout show 2>/dev/null | grep -q "$node"; then
  g layout assign -z dc1 -c 1G "$node" >/dev/null
fi
if g layout show 2>/dev/null | grep -qi "apply --version 1"; then
  g layout apply --version 1 >/dev/null
fi
# Buckets and keys are refused until the layout has propagated.
for _ in $(seq 1 50); do
  g bucket info "$bucket" >/dev/null 2>&1 && break
  g bucket create "$bucket" >/dev/null 2>&1 && break
  sleep 0.2
done
g bucket info "$bucket" >/dev/null || { echo "garage: could not create bucket $bucket" >&2; exit 1; }
if ! g key info ota-test-key >/dev/null 2>&1; then
  g key create ota-test-key >/dev/null
fi
info=$(g key info ota-test-key --show-secret)
key_id=$(printf '%s\n' "$info" | sed -n 's/^Key ID: *//p' | head -n1)
secret_key=$(printf '%s\n' "$info" | sed -n 's/^Secret key: *//p' | head -n1)
[ -n "$key_id" ] && [ -n "$secret_key" ] || { echo "garage: could not read the key:" >&2; printf '%s\n' "$info" >&2; exit 1; }
g bucket allow --read --write --owner "$bucket" --key ota-test-key >/dev/null

line="export OTA_TEST_S3_URL='s3://$bucket?endpoint=http://127.0.0.1:$port&region=garage' AWS_ACCESS_KEY_ID='$key_id' AWS_SECRET_ACCESS_KEY='$secret_key'"
printf '%s\n' "$line" > "$dir/env"
chmod 600 "$dir/env"
printf '%s\n' "$line"
