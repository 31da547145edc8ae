#!/usr/bin/env bash
# Memory of an unpaged list: the API's peak resident memory while it answers GET /events
# (no page, no per_page: every row, streamed) over BENCH_EVENTS events (default 1,000,000).
#
#   cargo build --release -p shortline-api && loadtests/eventlog-unpaged.sh
#
# 1. Creates a scratch database `shortline_bench_unpaged` on DATABASE_URL's PostgreSQL (dropped
#    and re-created, dropped at the end unless BENCH_KEEP=1), applies the migrations and fills
#    BENCH_EVENTS `redirect` events (a details object of about 200 bytes each, like a click's)
#    with one `INSERT ... SELECT FROM generate_series`.
# 2. Starts the release API on a free loopback port (NATS pointed at a closed port) and reads
#    its resident memory (VmRSS) and peak (VmHWM) from /proc: idle; after one unfiltered
#    GET /events read to the end (bytes, rows counted, first and last id checked, seconds);
#    after three at once, while GET /health is timed every 100 ms beside them.
# Prints a markdown table. Settings: BENCH_EVENTS=1000000 BENCH_API_BIN=PATH BENCH_KEEP=0.
# Needs a running PostgreSQL (it never starts or stops one), psql, curl and python3; Linux.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
SHORTLINE_LOG_TAG=bench-unpaged

EVENTS="${BENCH_EVENTS:-1000000}"
[[ $EVENTS =~ ^[0-9]+$ ]] && ((EVENTS > 0)) || die "BENCH_EVENTS must be a whole number > 0"

find_psql
require_commands python3 curl

TARGET="$(cargo_target)"
API_BIN="${BENCH_API_BIN:-$TARGET/release/shortline-api}"
[[ -x $API_BIN ]] || die "$API_BIN not found: cargo build --release -p shortline-api"

bench_workdir unpaged
scratch_db shortline_bench_unpaged "$API_BIN"
log "filling $EVENTS events"
psql_bench -v events="$EVENTS" <<'SQL'
SET synchronous_commit = off;
INSERT INTO events (event_id, url_id, user_id, event_type, occurred_at, details)
SELECT '01UNPAGED' || lpad(to_hex(g), 17, '0'), 1 + g % 1000, 1 + g % 100, 'redirect',
       timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second',
       jsonb_build_object('ip', '203.0.' || (g % 256) || '.0',
                          'user_agent', 'Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0',
                          'referrer', 'https://news.example.org/')
FROM generate_series(1, :events) AS g;
ANALYZE events;
SQL
TABLE_SIZE="$(bench_sql "SELECT pg_size_pretty(pg_table_size('events'))")"

start_bench_api api "$API_BIN" LOG_FORMAT=pretty
PORT="${API_ADDR##*:}"

python3 - "$PORT" "$API_PID" "$EVENTS" "$TABLE_SIZE" "$(nproc)" <<'PY'
import http.client, sys, threading, time

port, pid, events, table_size, cores = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]

def mem():
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]

def get_all():
    """GET /events read to the end in 64 KiB pieces: bytes, rows, first and last id, seconds."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    start = time.perf_counter()
    conn.request("GET", "/events")
    res = conn.getresponse()
    assert res.status == 200, res.status
    size = rows = 0
    head = tail = carry = b""
    mark = b'{"id":'
    while True:
        piece = res.read(65536)
        if not piece:
            break
        size += len(piece)
        joined = carry + piece  # a mark split between two pieces counts once
        rows += joined.count(mark)
        carry = joined[-(len(mark) - 1):]
        if len(head) < 64:
            head += piece[:64]
        tail = (tail + piece)[-4096:]
    took = time.perf_counter() - start
    first = int(head.split(b'{"id":', 1)[1].split(b",", 1)[0])
    last = int(tail.rsplit(b'{"id":', 1)[1].split(b",", 1)[0])
    assert tail.endswith(b"}]"), tail[-20:]
    return size, rows, first, last, took

def row(label, note, rss_hwm):
    rss, hwm = rss_hwm
    print(f"| {label} | {note} | {rss:.0f} MiB | {hwm:.0f} MiB |")

print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {cores} cores; {events:,} events (table {table_size})\n")
print("| step | result | VmRSS after | VmHWM (peak) so far |")
print("| --- | --- | ---: | ---: |")
row("idle", "started, `/health` answered", mem())
size, rows, first, last, took = get_all()
assert rows == events and first == 1 and last == events, (rows, first, last)
row("one `GET /events`", f"{size / 2**20:.0f} MiB, {rows:,} rows (ids {first}..{last}) in {took:.1f} s", mem())

results, health = [], []
stop = threading.Event()
def health_loop():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        start = time.perf_counter()
        conn.request("GET", "/health")
        conn.getresponse().read()
        health.append((time.perf_counter() - start) * 1000)
        time.sleep(0.1)
threads = [threading.Thread(target=lambda: results.append(get_all())) for _ in range(3)]
prober = threading.Thread(target=health_loop)
prober.start()
for t in threads:
    t.start()
for t in threads:
    t.join()
stop.set()
prober.join()
assert len(results) == 3 and all(r[1] == events for r in results), [r[1] for r in results]
health.sort()
row("three `GET /events` at once",
    f"each {results[0][0] / 2**20:.0f} MiB, all {events:,} rows, in {', '.join(f'{r[4]:.1f}' for r in results)} s; "
    f"`/health` beside them: max {health[-1]:.1f} ms, median {health[len(health) // 2]:.1f} ms ({len(health)} probes)",
    mem())
PY
