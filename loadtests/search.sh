#!/usr/bin/env bash
# Search latency of GET /urls?q= (issue #16): p50 and p99 of one search at a time against the
# lone release API (loadtests/lib.sh: scratch database, no NATS, no Valkey, API_AUTH=off) over
# BENCH_LINKS links (default 1,000,000), for a few realistic terms, with per_page=20 (each
# answer also counts its matches for X-Total-Count).
#
#   cargo build --release -p shortline-api && loadtests/search.sh
#
# 1. Creates a scratch database `shortline_bench_search` on DATABASE_URL's PostgreSQL (dropped
#    and re-created, dropped at the end unless BENCH_KEEP=1), applies the migrations (pg_trgm
#    and the trigram indexes included) and fills BENCH_USERS users and BENCH_LINKS links with
#    one `INSERT ... SELECT FROM generate_series`: titles of three words from a 64-adjective
#    and a 64-noun list ("Amber Lagoon Harbor"), URLs on 50 domains with a two-word slug and
#    the row number (https://opswise.net/amber-lagoon/48213), codes of hex digits; then
#    VACUUM ANALYZE. Each title word is in 1 of 64 titles (about 31,000 links), each domain in 1 of
#    10 links.
# 2. Starts the release API on a free loopback port and, for each term (taken from the seeded
#    rows), sends BENCH_REQUESTS
#    GET /urls?q=<term>&per_page=20 one after another on one keep-alive connection (after 20
#    warm-up requests), timing each from request to the last byte; prints a markdown table
#    with the matches (X-Total-Count), p50, p99 and max per term, and one line with four
#    clients searching the terms at once.
# Settings: BENCH_LINKS=1000000 BENCH_USERS=10000 BENCH_REQUESTS=300 BENCH_API_BIN=PATH
# BENCH_KEEP=0. Needs a running PostgreSQL (it never starts or stops one), psql, curl and
# python3; Linux.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
SHORTLINE_LOG_TAG=bench-search

LINKS="${BENCH_LINKS:-1000000}"
USERS="${BENCH_USERS:-10000}"
REQUESTS="${BENCH_REQUESTS:-300}"
for v in LINKS USERS REQUESTS; do
	[[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0)) || die "BENCH_$v must be a whole number > 0"
done

find_psql
require_commands python3 curl

TARGET="$(cargo_target)"
API_BIN="${BENCH_API_BIN:-$TARGET/release/shortline-api}"
[[ -x $API_BIN ]] || die "$API_BIN not found: cargo build --release -p shortline-api"

bench_workdir search
scratch_db shortline_bench_search "$API_BIN"
log "filling $USERS users and $LINKS links"
start=$(date +%s.%N)
psql_bench -v users="$USERS" -v links="$LINKS" <<'SQL'
SET synchronous_commit = off;
INSERT INTO users (username, email)
SELECT 'user' || g, 'user' || g || '@example.com' FROM generate_series(1, :users) AS g;
WITH words AS (
    SELECT ARRAY['amber','brisk','calm','dapper','eager','fancy','gentle','happy','icy','jolly',
                 'keen','lively','mellow','nimble','olive','proud','quiet','rapid','sunny','tidy',
                 'urban','vivid','witty','young','zesty','bold','crisp','dusty','early','frosty',
                 'golden','hidden','ivory','jade','kind','lucky','misty','noble','orange','pale',
                 'quick','royal','silver','tender','upbeat','velvet','wild','yellow','azure','bright',
                 'cosmic','daring','electric','fresh','grand','humble','indigo','jazzy','kinetic',
                 'lunar','modern','neon','ocean','primal'] AS adj,
           ARRAY['lagoon','harbor','journey','meadow','canyon','summit','river','forest','island',
                 'valley','garden','castle','bridge','market','studio','rocket','planet','signal',
                 'beacon','voyage','anchor','compass','lantern','orchard','prairie','glacier',
                 'harvest','festival','gallery','library','theater','stadium','village','citadel',
                 'pavilion','workshop','kitchen','bakery','cinema','museum','academy','clinic',
                 'station','airport','terminal','highway','tunnel','tower','temple','palace',
                 'quarry','reef','delta','crater','oasis','dune','fjord','geyser','lake','marsh',
                 'plateau','ridge','spring','sale'] AS noun,
           ARRAY['opswise.net','example.com','shop.example','news.example.org','blog.example.net',
                 'docs.example.io','store.example','travel.example','music.example','video.example']
               AS domain
)
INSERT INTO urls (user_id, short_code, original_url, title, created_at, updated_at)
SELECT 1 + g % :users,
       substr(md5(g::text), 1, 7) || to_hex(g),
       'https://' || (CASE WHEN g % 5 = 0 THEN 'www.' ELSE '' END)
           || domain[1 + (g / 7) % 10] || '/' || adj[1 + (g * 7) % 64] || '-' || noun[1 + (g / 64) % 64]
           || '/' || g,
       initcap(adj[1 + (g * 13) % 64] || ' ' || noun[1 + (g / 64) % 64] || ' '
               || noun[1 + (g / 4096) % 64]),
       timestamptz '2026-01-01 00:00:00+00' + g * interval '10 seconds',
       timestamptz '2026-01-01 00:00:00+00' + g * interval '10 seconds'
FROM words, generate_series(1, :links) AS g;
SELECT setval('users_id_seq', (SELECT max(id) FROM users)) \g /dev/null
ANALYZE users;
SQL
# VACUUM also moves the GIN indexes' pending entries (fastupdate) into the indexes, as
# autovacuum would soon after such a load: the steady state, not a vacuum racing the run.
bench_sql "VACUUM (ANALYZE) urls"
end=$(date +%s.%N)
FILL_SECS="$(python3 -c "print(f'{$end-$start:.0f}')")"
TABLE_SIZE="$(bench_sql "SELECT pg_size_pretty(pg_total_relation_size('urls'))")"
log "filled in ${FILL_SECS} s (urls with its indexes: $TABLE_SIZE)"

# The terms, taken from the data: one link's URL path, the first two words of another's
# title, the start of a third's code, and the owner of a fourth.
pick() { bench_sql "SELECT $1 FROM urls WHERE id = (SELECT min(id) + $2 FROM urls)"; }
SLUG="$(pick "regexp_replace(original_url, '^https://[^/]+/', '')" "($LINKS * 48 / 100)")"
PHRASE="$(pick "lower(split_part(title, ' ', 1) || ' ' || split_part(title, ' ', 2))" "($LINKS * 77 / 100)")"
WORD="$(pick "lower(split_part(title, ' ', 3))" "($LINKS * 33 / 100)")"
CODE="$(pick "left(short_code, 5)" "($LINKS * 12 / 100)")"
OWNER="$(pick "user_id" "($LINKS * 42 / 100)")"

start_bench_api api "$API_BIN"
PORT="${API_ADDR##*:}"

python3 - "$PORT" "$REQUESTS" "$LINKS" "$TABLE_SIZE" "$FILL_SECS" "$(nproc)" \
	"$SLUG" "$PHRASE" "$WORD" "$CODE" "$OWNER" <<'PY'
import http.client, sys, threading, time, urllib.parse

port, requests, links, size, fill, cores = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
slug, phrase, word, code, owner = sys.argv[7:12]
TERMS = [
    ("one link's URL path", slug),
    ("a two-word title phrase", phrase),
    ("a word in 1 of 64 titles", word),
    ("a domain (1 in 10 links)", "travel.example"),
    ("a short code's first 5 characters", code),
    ("a word, one user's links", word.capitalize(), owner),
    ("two characters (no trigram: a scan; a fifth of the requests)", "zz"),
]

def path(term, user=None):
    q = {"q": term, "per_page": "20"}
    if user:
        q["user_id"] = str(user)
    return "/urls?" + urllib.parse.urlencode(q)

def timed(conn, p):
    start = time.perf_counter()
    conn.request("GET", p)
    res = conn.getresponse()
    body = res.read()
    took = (time.perf_counter() - start) * 1000
    assert res.status == 200, (res.status, body[:200])
    return took, int(res.getheader("X-Total-Count"))

def pct(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]

print(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {cores} cores, {links:,} links "
      f"(urls with indexes {size}, filled in {fill} s), {requests} sequential requests per term, per_page=20")
print()
print("| term | q | matches (X-Total-Count) | p50 ms | p99 ms | max ms |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
paths = []
for label, term, *user in TERMS:
    p = path(term, user[0] if user else None)
    paths.append(p)
    for _ in range(20):
        timed(conn, p)
    samples, total = [], 0
    for _ in range(requests // 5 if len(term) < 3 else requests):
        took, total = timed(conn, p)
        samples.append(took)
    print(f"| {label} | `{term}` | {total:,} | {pct(samples, 50):.1f} | {pct(samples, 99):.1f} | {max(samples):.1f} |")

# Four clients at once, each cycling through the terms.
results, lock = [], threading.Lock()
def client(offset):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    mine = []
    for i in range(requests):
        mine.append(timed(c, paths[(i + offset) % len(paths)])[0])
    with lock:
        results.extend(mine)
threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
started = time.perf_counter()
for t in threads: t.start()
for t in threads: t.join()
secs = time.perf_counter() - started
print()
print(f"4 clients at once, every term in turn: {len(results):,} requests in {secs:.1f} s "
      f"({len(results)/secs:.0f} req/s), p50 {pct(results, 50):.1f} ms, p99 {pct(results, 99):.1f} ms")
PY
