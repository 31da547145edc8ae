#!/usr/bin/env bash
# Import benchmarks (issue #2): a 100,000-row users CSV through POST /users/bulk, and
# 1,000,000 links (plus their users and events) through `shortline-api seed`, then the
# statistics of those events through `shortline-analytics rebuild-rollups` (as `make up` does).
#
#   loadtests/import.sh            # needs the local servers (make servers) and a release build
#
# Runs against a scratch database `shortline_bench` on the same PostgreSQL (dropped and
# re-created each run), its own API process on a free port, and prints one line per
# measurement; copy them into docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release/shortline-api"
ANALYTICS_BIN="$TARGET/release/shortline-analytics"
[[ -x $BIN && -x $ANALYTICS_BIN ]] || cargo build --release -p shortline-api -p shortline-analytics
BASE_URL="${DATABASE_URL:-postgres://shortline@127.0.0.1:55432/shortline}"
ADMIN_URL="${BASE_URL%/*}/postgres"
BENCH_URL="${BASE_URL%/*}/shortline_bench"
WORK="$(mktemp -d /tmp/shortline-bench.XXXXXX)"
api_pid=""
cleanup() {
	[[ -n $api_pid ]] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

PSQL="${PG_BIN:-$(dirname "$(find "$ROOT/tools" -name psql -type f | head -1)")}/psql"
psql_admin() { "$PSQL" -qAt "$ADMIN_URL" -c "$1"; }
psql_bench() { "$PSQL" -qAt "$BENCH_URL" -c "$1"; }
psql_admin "DROP DATABASE IF EXISTS shortline_bench" >/dev/null
psql_admin "CREATE DATABASE shortline_bench" >/dev/null
DATABASE_URL="$BENCH_URL" "$BIN" migrate >/dev/null

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(uname -m)"

# 1. 100,000 users through POST /users/bulk.
python3 scripts/gen_demo_data.py --out "$WORK/users100k" --users 100000 --links 1 --seed 7 >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
DATABASE_URL="$BENCH_URL" API_LISTEN="127.0.0.1:$port" NATS_URL="nats://127.0.0.1:1" NATS_PREFIX=bench API_AUTH=off VALKEY_URL= RUST_LOG=warn \
	CSV_MAX_BYTES=$((256 * 1024 * 1024)) "$BIN" serve >"$WORK/api.log" 2>&1 &
api_pid=$!
for _ in $(seq 100); do curl -fs "127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
size=$(stat -c %s "$WORK/users100k/users.csv")
result="$(curl -fsS -w ' %{time_total}' -F "file=@$WORK/users100k/users.csv" "127.0.0.1:$port/users/bulk")"
secs="${result##* }"
body="${result% *}"
python3 - "$secs" "$size" "$body" <<'PY'
import json, sys
secs, size, body = float(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
print(f"users_bulk_100k: {body['count']} rows ({size/1e6:.1f} MB) in {secs:.2f} s = {body['count']/secs:,.0f} rows/s (inserted {body['inserted']})")
PY
kill "$api_pid"; wait "$api_pid" 2>/dev/null || true; api_pid=""

# 2. 1,000,000 links through the seed loader (fresh database).
psql_admin "DROP DATABASE shortline_bench" >/dev/null
psql_admin "CREATE DATABASE shortline_bench" >/dev/null
DATABASE_URL="$BENCH_URL" "$BIN" migrate >/dev/null
python3 scripts/gen_demo_data.py --out "$WORK/links1m" --users 20000 --links 1000000 --events-per-link 1 --seed 11 >/dev/null
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$BIN" seed "$WORK/links1m" >/dev/null
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'seed_1m_links: 20,000 users + 1,000,000 links + 1,000,000 events in {s:.1f} s = {1_000_000/s:,.0f} links/s (events included)')"
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$ANALYTICS_BIN" rebuild-rollups >/dev/null
end=$(date +%s.%N)
redirects="$(psql_bench "SELECT count(*) FROM events WHERE event_type = 'redirect'")"
python3 -c "s=$end-$start; print(f'rebuild_rollups_1m: link statistics of {int(\"$redirects\"):,} redirect events in {s:.1f} s')"
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$BIN" seed "$WORK/links1m" >/dev/null
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'seed_1m_links_rerun: {s:.1f} s (every row already present, nothing inserted)')"
psql_admin "DROP DATABASE shortline_bench" >/dev/null
