#!/usr/bin/env bash
# Event-log benchmark (issue #4): GET /events and GET /urls/{id}/events over 10,000,000 rows.
#
#   cargo build --release -p shortline-api && loadtests/eventlog.sh
#
# 1. Creates a scratch database `shortline_bench_events` on DATABASE_URL's PostgreSQL (dropped
#    and re-created), applies the migrations (`shortline-api migrate`), and fills it with SQL
#    (`INSERT ... SELECT FROM generate_series`): BENCH_USERS users, BENCH_LINKS links and
#    BENCH_EVENTS events, url_id uniform over the links, each link owned by one user,
#    ~97% `redirect`, 1% `created`, 2% `updated`, 0.2% `deleted`, a details object per type,
#    a unique event_id per row, occurred_at rising with id. The event-log indexes are dropped
#    for the fill and re-created from their own definitions afterwards (much faster than
#    maintaining them row by row); the script checks that the same set is back, then ANALYZEs.
# 2. Starts the release API on a free loopback port against it (NATS pointed at a closed port:
#    no outbox traffic) and measures, one client on one keep-alive connection, BENCH_REQUESTS
#    requests per query shape (after BENCH_WARMUP unmeasured ones) with random ids: p50, p99,
#    mean, and the rows and Link headers seen. Deep pages compare keyset (`after_id`) with
#    offset (`page`) at the contract's page 5000 and at half the log (that offset page only
#    BENCH_REQUESTS/25 times: it is slow). Prints a markdown table.
# 3. Prints EXPLAIN (ANALYZE, BUFFERS) of each shape's SQL (the statement the API sends), to
#    show which index serves it, then drops the scratch database.
#
# Settings (environment): BENCH_EVENTS=10000000 BENCH_LINKS=100000 BENCH_USERS=10000
#   BENCH_REQUESTS=500 BENCH_WARMUP=50 BENCH_API_BIN=PATH BENCH_KEEP=0 (1: keep the database)
#   BENCH_OUT=FILE (also write the report there)
# Needs a running PostgreSQL (it never starts or stops one), psql and python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
SHORTLINE_LOG_TAG=bench-events

EVENTS="${BENCH_EVENTS:-10000000}"
LINKS="${BENCH_LINKS:-100000}"
USERS="${BENCH_USERS:-10000}"
REQUESTS="${BENCH_REQUESTS:-500}"
WARMUP="${BENCH_WARMUP:-50}"
OUT="${BENCH_OUT:-}"
for v in EVENTS LINKS USERS REQUESTS WARMUP; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done
((EVENTS > 0 && LINKS > 0 && USERS > 0 && REQUESTS > 0)) || die "BENCH_EVENTS, BENCH_LINKS, BENCH_USERS and BENCH_REQUESTS must be > 0"

find_psql
require_commands python3

TARGET="$(cargo_target)"
API_BIN="${BENCH_API_BIN:-$TARGET/release/shortline-api}"
[[ -x $API_BIN ]] || die "$API_BIN not found: cargo build --release -p shortline-api"

bench_workdir events
secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }

# ---------------------------------------------------------------------------------------
# 1. Scratch database, schema, fill
# ---------------------------------------------------------------------------------------
scratch_db shortline_bench_events "$API_BIN"
INDEXES_BEFORE="$(psql_bench -c "SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'events'")"

log "filling $USERS users, $LINKS links, $EVENTS events"
fill_start=$(date +%s.%N)
psql_bench -v events="$EVENTS" -v links="$LINKS" -v users="$USERS" >"$WORK/fill.log" 2>&1 <<'SQL' || {
SET synchronous_commit = off;
SET maintenance_work_mem = '512MB';
SELECT setseed(0.4242);

INSERT INTO users (id, username, email, created_at)
SELECT u, 'bench' || u, 'bench' || u || '@example.org', timestamptz '2025-06-01 00:00:00+00' + u * interval '1 minute'
FROM generate_series(1, :users) AS u;
SELECT setval(pg_get_serial_sequence('users', 'id'), :users);

-- Link n belongs to user 1 + (n * 7919) % users (every user owns about links/users links).
INSERT INTO urls (id, user_id, short_code, original_url, title, is_active, created_at, updated_at)
SELECT n, 1 + (n * 7919) % :users, 'b' || lpad(to_hex(n), 8, '0'),
       'https://example.org/bench/' || n, 'Bench link ' || n, n % 50 <> 0,
       timestamptz '2026-01-01 00:00:00+00' + n * interval '10 seconds',
       timestamptz '2026-01-01 00:00:00+00' + n * interval '10 seconds'
FROM generate_series(1, :links) AS n;
SELECT setval(pg_get_serial_sequence('urls', 'id'), :links);

-- Drop the event log's secondary indexes and unique constraint for the fill; their exact
-- definitions are kept and replayed below.
CREATE TEMP TABLE bench_events_indexes AS
    SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def,
           c.conname IS NOT NULL AS is_constraint, pg_get_constraintdef(c.oid) AS condef
    FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
    WHERE i.indrelid = 'events'::regclass;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM bench_events_indexes LOOP
        IF r.is_constraint THEN
            EXECUTE format('ALTER TABLE events DROP CONSTRAINT %I', r.name);
        ELSE
            EXECUTE format('DROP INDEX %I', r.name);
        END IF;
    END LOOP;
END $$;

INSERT INTO events (id, event_id, url_id, user_id, event_type, occurred_at, details)
SELECT g, '01BENCH' || lpad(to_hex(g), 19, '0'), url_id, 1 + (url_id * 7919) % :users, event_type,
       timestamptz '2026-01-01 00:00:00+00' + g * interval '2.5 seconds',
       CASE event_type
           WHEN 'redirect' THEN jsonb_build_object(
               'ip', '203.0.' || (g % 256) || '.0',
               'user_agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
                                    'Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 Version/18.1 Mobile/15E148 Safari/604.1',
                                    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36',
                                    'Googlebot/2.1 (+http://www.google.com/bot.html)'])[1 + g % 4],
               'referrer', (ARRAY['', 'https://news.example.org/', 'https://social.example.com/feed', 'https://mail.example.net/'])[1 + (g / 7) % 4])
           WHEN 'created' THEN jsonb_build_object('short_code', 'b' || lpad(to_hex(url_id), 8, '0'),
                                                 'original_url', 'https://example.org/bench/' || url_id)
           WHEN 'updated' THEN jsonb_build_object('field', 'title', 'new_value', 'Bench link ' || g)
           ELSE jsonb_build_object('reason', 'user_requested')
       END
FROM (
    SELECT g, url_id, CASE WHEN r < 0.010 THEN 'created' WHEN r < 0.030 THEN 'updated'
                           WHEN r < 0.032 THEN 'deleted' ELSE 'redirect' END AS event_type
    FROM (SELECT g, 1 + floor(random() * :links)::bigint AS url_id, random() AS r
          FROM generate_series(1, :events) AS g) AS raw
) AS e;
SELECT setval(pg_get_serial_sequence('events', 'id'), :events);

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM bench_events_indexes ORDER BY name LOOP
        IF r.is_constraint THEN
            EXECUTE format('ALTER TABLE events ADD CONSTRAINT %I %s', r.name, r.condef);
        ELSE
            EXECUTE r.def;
        END IF;
    END LOOP;
END $$;
ANALYZE;
SQL
	cat "$WORK/fill.log" >&2
	die "fill failed"
}
FILL_SECS="$(secs_since "$fill_start")"
INDEXES_AFTER="$(psql_bench -c "SELECT string_agg(indexdef, E'\n' ORDER BY indexname) FROM pg_indexes WHERE tablename = 'events'")"
[[ $INDEXES_BEFORE == "$INDEXES_AFTER" ]] || die "the events indexes differ after the fill:
before:
$INDEXES_BEFORE
after:
$INDEXES_AFTER"
IFS='|' read -r ROWS TABLE_SIZE TOTAL_SIZE < <(psql_bench -c \
	"SELECT count(*), pg_size_pretty(pg_table_size('events')), pg_size_pretty(pg_total_relation_size('events')) FROM events")
log "filled in $FILL_SECS s: $ROWS events, table $TABLE_SIZE, with indexes $TOTAL_SIZE"

# ---------------------------------------------------------------------------------------
# 2. The API on a free port, and the measurements
# ---------------------------------------------------------------------------------------
start_bench_api api "$API_BIN" LOG_FORMAT=pretty
PORT="${API_ADDR##*:}"
log "$REQUESTS requests per shape after $WARMUP warm-up"

python3 - "$PORT" "$REQUESTS" "$WARMUP" "$EVENTS" "$LINKS" "$USERS" >"$WORK/table.md" <<'PY'
import http.client, json, random, statistics, sys, time

port, n, warmup, events, links, users = map(int, sys.argv[1:])
rng = random.Random(7)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
# The contract's deep offset page (page 5000: offset 499,900, capped to the data), and the
# keyset page at the same depth; then the offset page at half the log, fewer times (it is slow).
deep = min(500_000, max(100, events // 2))
half = max(100, events // 2)

# (label, note, path, requests or None for the default)
shapes = [
    ("`/events?url_id=X&per_page=100`", "url_id index", lambda: f"/events?url_id={rng.randint(1, links)}&per_page=100", None),
    ("`/events?user_id=X&per_page=100`", "user_id index", lambda: f"/events?user_id={rng.randint(1, users)}&per_page=100", None),
    ("`/events?event_type=created&per_page=100`", "first page", lambda: "/events?event_type=created&per_page=100", None),
    ("`/events?event_type=created&after_id=N&per_page=100`", f"N random in 1..{events:,}", lambda: f"/events?event_type=created&after_id={rng.randint(1, events)}&per_page=100", None),
    ("`/events?event_type=redirect&after_id=N&per_page=100`", f"N random in 1..{events:,}", lambda: f"/events?event_type=redirect&after_id={rng.randint(1, events)}&per_page=100", None),
    ("`/urls/X/events?per_page=100`", "link lookup + url_id index", lambda: f"/urls/{rng.randint(1, links)}/events?per_page=100", None),
    ("`/events?after_id=N&per_page=100`", f"keyset, N ≈ {deep:,}", lambda: f"/events?after_id={deep - 100 + rng.randint(0, 100)}&per_page=100", None),
    ("`/events?page=P&per_page=100`", f"offset, P ≈ {deep // 100:,} (offset ≈ {deep - 100:,})", lambda: f"/events?page={deep // 100 - 1 + rng.randint(0, 1)}&per_page=100", None),
    ("`/events?after_id=N&per_page=100`", f"keyset, N ≈ {half:,}", lambda: f"/events?after_id={half - 100 + rng.randint(0, 100)}&per_page=100", None),
    ("`/events?page=P&per_page=100`", f"offset, P ≈ {half // 100:,} (offset ≈ {half - 100:,}); {max(1, n // 25)} requests", lambda: f"/events?page={half // 100 - 1 + rng.randint(0, 1)}&per_page=100", max(1, n // 25)),
]

def get(path):
    start = time.perf_counter()
    conn.request("GET", path)
    res = conn.getresponse()
    body = res.read()
    took = time.perf_counter() - start
    if res.status != 200:
        sys.exit(f"GET {path}: {res.status} {body[:200]!r}")
    return took, len(json.loads(body)), res.getheader("Link")

def pct(sorted_ms, p):
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]

print("| query | note | p50 | p99 | mean | req/s (1 client) | rows/response | with Link next |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, note, path, requests in shapes:
    requests = requests or n
    for _ in range(warmup if requests == n else min(warmup, 2)):
        get(path())
    times, rows, links_seen = [], [], 0
    for _ in range(requests):
        took, returned, link = get(path())
        times.append(took * 1000)
        rows.append(returned)
        links_seen += link is not None
    times.sort()
    mean = statistics.fmean(times)
    print(f"| {label} | {note} | {pct(times, 50):.2f} ms | {pct(times, 99):.2f} ms | {mean:.2f} ms "
          f"| {1000 / mean:,.0f} | {statistics.fmean(rows):.0f} | {100 * links_seen / requests:.0f}% |")
    sys.stdout.flush()
PY

# ---------------------------------------------------------------------------------------
# 3. Plans: the statements the API sends (events/repo.rs), with sample values
# ---------------------------------------------------------------------------------------
SAMPLE_URL=$((LINKS / 3 + 1))
SAMPLE_USER=$((USERS / 3 + 1))
HALF=$((EVENTS / 2))
DEEP=$((HALF < 500000 ? HALF : 500000))
SELECT_EVENTS="SELECT id, url_id, user_id, event_type, occurred_at, details FROM events WHERE TRUE"
# explain SQL: its plan with run times and buffers (planning buffers left out).
explain() {
	psql_bench -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY ON) $1" |
		awk '/^ *Planning:/ {skip = 1; next} skip && /^ *Buffers:/ {skip = 0; next} {skip = 0; print}'
}
declare -a PLAN_LABELS=(
	"url_id = $SAMPLE_URL"
	"user_id = $SAMPLE_USER"
	"event_type = 'created'"
	"event_type = 'created' AND id > $HALF"
	"event_type = 'redirect' AND id > $HALF"
	"/urls/$SAMPLE_URL/events: the link, then url_id = $SAMPLE_URL"
	"id > $DEEP (keyset)"
	"OFFSET $((DEEP - 100)) (page $((DEEP / 100)))"
	"id > $HALF (keyset)"
	"OFFSET $((HALF - 100)) (page $((HALF / 100)))"
)
declare -a PLAN_SQL=(
	"$SELECT_EVENTS AND url_id = $SAMPLE_URL ORDER BY id LIMIT 101"
	"$SELECT_EVENTS AND user_id = $SAMPLE_USER ORDER BY id LIMIT 101"
	"$SELECT_EVENTS AND event_type = 'created' ORDER BY id LIMIT 101"
	"$SELECT_EVENTS AND event_type = 'created' AND id > $HALF ORDER BY id LIMIT 101"
	"$SELECT_EVENTS AND event_type = 'redirect' AND id > $HALF ORDER BY id LIMIT 101"
	"SELECT id, user_id, short_code, original_url, title, is_active, created_at, updated_at FROM urls WHERE id = $SAMPLE_URL"
	"$SELECT_EVENTS AND id > $DEEP ORDER BY id LIMIT 101"
	"$SELECT_EVENTS ORDER BY id LIMIT 101 OFFSET $((DEEP - 100))"
	"$SELECT_EVENTS AND id > $HALF ORDER BY id LIMIT 101"
	"$SELECT_EVENTS ORDER BY id LIMIT 101 OFFSET $((HALF - 100))"
)
{
	printf '\n### Plans (EXPLAIN (ANALYZE, BUFFERS), sample values)\n\n'
	for i in "${!PLAN_SQL[@]}"; do
		printf '%s\n\n```\n' "${PLAN_LABELS[i]}"
		explain "${PLAN_SQL[i]}"
		if [[ $i == 5 ]]; then
			explain "$SELECT_EVENTS AND url_id = $SAMPLE_URL ORDER BY id LIMIT 101"
		fi
		printf '```\n\n'
	done
} >"$WORK/plans.md"

{
	printf '# %s, %s cores (%s), PostgreSQL %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(nproc)" "$(uname -m)" \
		"$(psql_bench -c 'SHOW server_version')"
	printf '# %s events (table %s, %s with indexes), %s links, %s users; filled in %s s\n\n' \
		"$ROWS" "$TABLE_SIZE" "$TOTAL_SIZE" "$LINKS" "$USERS" "$FILL_SECS"
	cat "$WORK/table.md" "$WORK/plans.md"
} | tee "${OUT:-/dev/null}"
if [[ $KEEP == 1 ]]; then
	log "kept the database $BENCH_DB (BENCH_KEEP=1)"
fi
