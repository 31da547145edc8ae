#!/usr/bin/env bash
# Import benchmarks (issue #2): a 100,000-row users CSV through POST /users/bulk, and
# 1,000,000 links (plus their users and events) through `shortline-api seed`, then the
# statistics of those events through `shortline-analytics rebuild-rollups` (as `make up` does).
#
#   loadtests/import.sh            # needs the local PostgreSQL (make servers) and a release build
#
# Runs against a scratch database `shortline_bench` on DATABASE_URL's PostgreSQL (dropped and
# re-created for each of the two parts, dropped at the end unless BENCH_KEEP=1), its own API
# process on a free port, and prints one line per measurement; copy them into
# docs/benchmarks.md. Settings (environment, for a quick check; the recorded numbers use the
# defaults): BENCH_CSV_USERS=100000 BENCH_LINKS=1000000 (with BENCH_LINKS/50 users).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
SHORTLINE_LOG_TAG=bench-import

CSV_USERS="${BENCH_CSV_USERS:-100000}"
LINKS="${BENCH_LINKS:-1000000}"
for v in CSV_USERS LINKS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number (got '${!v}')"
done
LINK_USERS=$(((LINKS + 49) / 50))

find_psql
require_commands python3 curl

TARGET="$(cargo_target)"
BIN="$TARGET/release/shortline-api"
ANALYTICS_BIN="$TARGET/release/shortline-analytics"
[[ -x $BIN && -x $ANALYTICS_BIN ]] || cargo build --release -p shortline-api -p shortline-analytics

bench_workdir import

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores, $(uname -m)"

# 1. 100,000 users through POST /users/bulk.
scratch_db shortline_bench "$BIN"
python3 scripts/gen_demo_data.py --out "$WORK/users" --users "$CSV_USERS" --links 1 --seed 7 >/dev/null
start_bench_api api "$BIN" CSV_MAX_BYTES=$((256 * 1024 * 1024))
size=$(stat -c %s "$WORK/users/users.csv")
result="$(curl -fsS -w ' %{time_total}' -F "file=@$WORK/users/users.csv" "$API_ADDR/users/bulk")"
secs="${result##* }"
body="${result% *}"
python3 - "$secs" "$size" "$body" "$CSV_USERS" <<'PY'
import json, sys
secs, size, body, n = float(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
name = "users_bulk_100k" if n == 100_000 else f"users_bulk_{n}"
print(f"{name}: {body['count']} rows ({size/1e6:.1f} MB) in {secs:.2f} s = {body['count']/secs:,.0f} rows/s (inserted {body['inserted']})")
PY
terminate_pid "$API_PID"

# 2. 1,000,000 links through the seed loader (fresh database).
scratch_db shortline_bench "$BIN"
python3 scripts/gen_demo_data.py --out "$WORK/links" --users "$LINK_USERS" --links "$LINKS" --events-per-link 1 --seed 11 >/dev/null
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$BIN" seed "$WORK/links" >/dev/null
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'seed_1m_links: {$LINK_USERS:,} users + {$LINKS:,} links + {$LINKS:,} events in {s:.1f} s = {$LINKS/s:,.0f} links/s (events included)')"
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$ANALYTICS_BIN" rebuild-rollups >/dev/null
end=$(date +%s.%N)
redirects="$(bench_sql "SELECT count(*) FROM events WHERE event_type = 'redirect'")"
python3 -c "s=$end-$start; print(f'rebuild_rollups_1m: link statistics of {int(\"$redirects\"):,} redirect events in {s:.1f} s')"
start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$BIN" seed "$WORK/links" >/dev/null
end=$(date +%s.%N)
python3 -c "s=$end-$start; print(f'seed_1m_links_rerun: {s:.1f} s (every row already present, nothing inserted)')"
