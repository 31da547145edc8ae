#!/usr/bin/env bash
# What key verification and the rate limit cost the API (the access-control issue): GET
# /urls/{id} on two api processes over the same scratch database, one with API_AUTH=off
# (no key, no limit) and one with API_AUTH=required (every request sends an admin key that
# is verified and counted in Valkey), measured in alternating rounds with wrk.
#
#   cargo build --release -p shortline-api && loadtests/auth.sh
#
# Settings (environment): BENCH_ROUNDS (3), BENCH_SECS per round (10), BENCH_CONNS (32),
# BENCH_LINKS (10,000), BENCH_KEEP (0; 1 keeps the scratch database `shortline_bench_auth`).
# Needs the local PostgreSQL and Valkey (`make servers`) or DATABASE_URL / VALKEY_URL;
# installs wrk with apt-get when missing and root. Prints one line per round and a summary
# line (median req/s of each, and the median of the per-round ratios required/off) to copy
# into docs/benchmarks.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
SHORTLINE_LOG_TAG=bench-auth

ROUNDS="${BENCH_ROUNDS:-3}"
SECS="${BENCH_SECS:-10}"
CONNS="${BENCH_CONNS:-32}"
LINKS="${BENCH_LINKS:-10000}"
for v in ROUNDS SECS CONNS LINKS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive whole number (got '${!v}')"
done

find_psql
require_commands python3 curl
ensure_wrk

TARGET="$(cargo_target)"
API_BIN="$TARGET/release/shortline-api"
[[ -x $API_BIN ]] || die "$API_BIN not found: cargo build --release -p shortline-api"

bench_workdir auth
scratch_db shortline_bench_auth "$API_BIN"
psql_bench -v links="$LINKS" <<'SQL'
INSERT INTO users (username, email) VALUES ('bench', 'bench@example.org');
INSERT INTO urls (user_id, short_code, original_url, title)
SELECT 1, 'b' || n, 'https://example.org/bench/' || n, 'bench ' || n FROM generate_series(1, :links) AS n;
SQL
seq 1 "$LINKS" | sed 's#^#urls/#' >"$WORK/paths"
# An admin key whose own limit is far above what the machine can send: every request is
# verified and counted in Valkey, none is refused.
KEY="$(DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$API_BIN" keys create --admin --name bench \
	--rate-limit 1000000000 --key-only)"

start_bench_api api-off "$API_BIN" API_DB_MAX_CONNECTIONS=16
OFF_ADDR=$API_ADDR
start_bench_api api-required "$API_BIN" API_DB_MAX_CONNECTIONS=16 API_AUTH=required \
	VALKEY_URL="$VALKEY_URL" NATS_PREFIX="bench$$"
ON_ADDR=$API_ADDR
# The limiter connects in the background: wait until answers carry its fields.
for _ in $(seq 100); do
	curl -fsS -o /dev/null -D - -H "Authorization: Bearer $KEY" "http://$ON_ADDR/urls/1" | grep -qi '^ratelimit:' && break
	sleep 0.1
done
curl -fsS -o /dev/null -D - -H "Authorization: Bearer $KEY" "http://$ON_ADDR/urls/1" | grep -qi '^ratelimit:' ||
	die "the required-auth api does not count requests in Valkey ($(redact_url "$VALKEY_URL"))"

run() { # LABEL ADDR [wrk header args...]
	local label="$1" addr="$2"
	shift 2
	wrk -t2 -c"$CONNS" -d"${SECS}s" --latency "$@" -s loadtests/redirect.lua "http://$addr" -- "$WORK/paths" random |
		awk -v l="$label" '/^RESULT/ {print l, $0}'
}

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(nproc) cores, GET /urls/{id} over $LINKS links, wrk -t2 -c$CONNS, ${SECS}s rounds"
run warmup-off "$OFF_ADDR" >/dev/null
run warmup-on "$ON_ADDR" -H "Authorization: Bearer $KEY" >/dev/null
for r in $(seq "$ROUNDS"); do
	run "round$r off" "$OFF_ADDR" | tee -a "$WORK/results"
	run "round$r required" "$ON_ADDR" -H "Authorization: Bearer $KEY" | tee -a "$WORK/results"
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"round(\d+) (\w+) RESULT .*rps=([\d.]+) p50_us=(\d+) p99_us=(\d+).*status_errors=(\d+) socket_errors=(\d+)", line)
    if m:
        rows.setdefault(int(m[1]), {})[m[2]] = (float(m[3]), int(m[4]), int(m[5]), int(m[6]) + int(m[7]))
errors = sum(v[3] for r in rows.values() for v in r.values())
ratios = [r["required"][0] / r["off"][0] for r in rows.values() if "off" in r and "required" in r]
med = lambda k, i: statistics.median(r[k][i] for r in rows.values())
print(f"summary: off {med('off', 0):,.0f} req/s (p99 {med('off', 2)/1000:.1f} ms), "
      f"required {med('required', 0):,.0f} req/s (p99 {med('required', 2)/1000:.1f} ms), "
      f"ratio {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) over {len(ratios)} rounds, "
      f"{errors} errors")
PY
