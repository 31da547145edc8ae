#!/usr/bin/env bash
# Analytics consumer benchmarks (issue #4): throughput of `shortline-analytics` draining a
# pre-filled click stream, idle end-to-end latency redirect -> event row, and lag under
# sustained redirect load. One command:
#
#   loadtests/analytics.sh         # about 3 minutes with the defaults (plus the build)
#
# Uses the example load tool services/analytics/examples/clickload.rs, and measures:
#   (1) throughput, default config: the click stream of prefix `benchan` is pre-filled with
#       BENCH_CLICKS clicks (`clickload fill`, BENCH_FILL_BATCH clicks per message, spread over
#       100,000 url ids, a mix of user agents and referrers); then `shortline-analytics` starts
#       and /metrics (`shortline_analytics_rows_written_total`) is polled every 0.5 s until every
#       click is a row. clicks/s = BENCH_CLICKS / (consumer start -> the poll that saw the last
#       row). SQL checks: `redirect` rows in events, sum(link_stats.redirect_count) and
#       sum(link_stats_hourly.redirect_count) (written with the event rows) must all equal
#       BENCH_CLICKS (the script fails otherwise). Then, outside the timing, it waits for the
#       rollup job to empty rollup_backlog and reports how long after the last row the referrer
#       and user-agent breakdowns were complete (the sums of link_stats_referrers and
#       link_stats_agents must equal BENCH_CLICKS).
#   (2) idle end-to-end latency: one link (`lat0001`) in the database, `shortline-redirect` on
#       the same prefix, the analytics service of (1) running and idle; `clickload latency`
#       sends BENCH_LATENCY_SAMPLES redirects at BENCH_LATENCY_RATE per second and times each
#       one until its event row is visible in PostgreSQL (p50 / p90 / p99 / max).
#   (3) sustained load: wrk drives GET /lat0001 for BENCH_SUSTAIN seconds at
#       BENCH_SUSTAIN_CONNECTIONS connections while the consumer's lag gauges
#       (`shortline_analytics_consumer_pending`, `..._ack_pending`,
#       `..._oldest_unacked_age_seconds`, refreshed by the service every 5 s) are sampled every
#       5 s; afterwards the new event rows of that link must equal the redirects wrk counted
#       (plus at most the requests in flight when wrk stopped).
#   (4) throughput again with ANALYTICS_BATCH_MESSAGES=128 ANALYTICS_BATCH_CLICKS=20000 (prefix
#       `benchan2`, event, rollup and backlog tables truncated first); BENCH_TUNED=0 skips it.
# Prints a markdown summary with the load average before and after.
#
# Settings (environment):
#   BENCH_CLICKS=1000000          clicks pre-filled for (1) and (4)
#   BENCH_FILL_BATCH=500          clicks per stream message (a redirect replica sends up to 500)
#   BENCH_DRAIN_TIMEOUT=600       give up when the consumer has not written every row by then (s)
#   BENCH_LATENCY_SAMPLES=300     redirects timed in (2)
#   BENCH_LATENCY_RATE=20         ... per second
#   BENCH_SUSTAIN=30              seconds of wrk in (3)
#   BENCH_SUSTAIN_CONNECTIONS=16  wrk -c in (3) (wrk -t1)
#   BENCH_TUNED=1                 0: skip (4)
#   BENCH_BUILD=1                 cargo build --release first (0: use the binaries as they are)
#   BENCH_LABEL=TEXT              a note for the header of the report
#   BENCH_OUT=FILE                also write the report to FILE
#   BENCH_KEEP=0                  1: keep the scratch database and the bench JetStream streams
#
# Uses the local PostgreSQL, Valkey and NATS (or DATABASE_URL / VALKEY_URL / NATS_URL): servers
# already running are reused; servers it has to start (scripts/servers.sh) are stopped at exit.
# Works in a scratch database `shortline_bench_analytics` (dropped and re-created) and on the
# JetStream streams of the prefixes `benchan` and `benchan2` (deleted before and after), runs
# every service on a free loopback port, and stops what it started by pid. Needs wrk (installed
# with apt-get when missing and running as root), curl and python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
# shellcheck disable=SC2034  # read by log() in lib.sh
SHORTLINE_LOG_TAG=bench-analytics

CLICKS="${BENCH_CLICKS:-1000000}"
FILL_BATCH="${BENCH_FILL_BATCH:-500}"
DRAIN_TIMEOUT="${BENCH_DRAIN_TIMEOUT:-600}"
LAT_SAMPLES="${BENCH_LATENCY_SAMPLES:-300}"
LAT_RATE="${BENCH_LATENCY_RATE:-20}"
SUSTAIN="${BENCH_SUSTAIN:-30}"
SUSTAIN_CONNS="${BENCH_SUSTAIN_CONNECTIONS:-16}"
TUNED="${BENCH_TUNED:-1}"
BUILD="${BENCH_BUILD:-1}"
OUT="${BENCH_OUT:-}"
PREFIX=benchan
TUNED_PREFIX=benchan2
LAT_CODE=lat0001
LAT_URL=https://example.com/latency
TUNED_ENV=(ANALYTICS_BATCH_MESSAGES=128 ANALYTICS_BATCH_CLICKS=20000)

for v in CLICKS FILL_BATCH DRAIN_TIMEOUT LAT_SAMPLES LAT_RATE SUSTAIN SUSTAIN_CONNS; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
	((${!v} > 0)) || die "BENCH_$v must be > 0"
done

# ---------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------
require_commands curl python3
ensure_wrk
find_psql

TARGET="$(cargo_target)"
API_BIN="$TARGET/release/shortline-api"
ANALYTICS_BIN="$TARGET/release/shortline-analytics"
REDIRECT_BIN="$TARGET/release/shortline-redirect"
CLICKLOAD_BIN="$TARGET/release/examples/clickload"
if [[ $BUILD == 1 ]]; then
	log "building release binaries (BENCH_BUILD=0 skips this)"
	cargo build -q --release -p shortline-api -p shortline-analytics -p shortline-redirect || die "cargo build failed"
	cargo build -q --release -p shortline-analytics --example clickload || die "cargo build of the clickload example failed"
fi
for b in "$API_BIN" "$ANALYTICS_BIN" "$REDIRECT_BIN" "$CLICKLOAD_BIN"; do
	[[ -x $b ]] || die "$b not found: cargo build --release -p shortline-api -p shortline-analytics -p shortline-redirect && cargo build --release -p shortline-analytics --example clickload"
done

# ---------------------------------------------------------------------------------------
# Cleanup: what this script started, by pid
# ---------------------------------------------------------------------------------------
bench_workdir analytics

# The bench JetStream streams (bench_cleanup drops them at exit unless BENCH_KEEP=1).
drop_streams() {
	local p
	for p in "$PREFIX" "$TUNED_PREFIX"; do
		"$CLICKLOAD_BIN" drop "$NATS_URL" "$p" || return 1
	done
}
bench_drop_extra() { drop_streams; }

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }
fmt_int() { awk -v n="$1" 'BEGIN {printf "%.0f", n}' | sed -E ':a; s/^([0-9]+)([0-9]{3})/\1,\2/; ta'; }

# metric FILE NAME: the sum of every sample of NAME (any labels) in a /metrics dump; empty
# when the metric is not there (yet).
metric() {
	awk -v name="$2" '
		$1 == name || index($1, name "{") == 1 { sum += $NF; seen = 1 }
		END { if (seen) printf "%.6g\n", sum }' "$1"
}

# scrape ADDR FILE: GET /metrics into FILE (empty file when it failed).
scrape() { curl -fsS --max-time 2 "http://$1/metrics" >"$2" 2>/dev/null || : >"$2"; }

# cpu_seconds PID...: user + system CPU seconds used so far by those processes (gone: 0).
cpu_seconds() {
	local pid total=0 ticks stat fields
	ticks=$(getconf CLK_TCK)
	for pid in "$@"; do
		stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
		# After "pid (comm) ": state is field 3 of stat(5), utime 14 and stime 15.
		read -r -a fields <<<"${stat##*) }"
		total=$((total + fields[11] + fields[12]))
	done
	awk -v t="$total" -v hz="$ticks" 'BEGIN {printf "%.1f", t / hz}'
}

# machine_busy: busy and total jiffies of all cores so far ("busy total").
machine_busy() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

ROWS_METRIC=shortline_analytics_rows_written_total
PENDING_METRIC=shortline_analytics_consumer_pending
ACK_PENDING_METRIC=shortline_analytics_consumer_ack_pending
AGE_METRIC=shortline_analytics_consumer_oldest_unacked_age_seconds

THROUGHPUT_ROWS=()
ROLLUP_ROWS=()
FAILED=0

# throughput NAME LABEL PREFIX ENV...: pre-fills PREFIX's click stream, starts shortline-analytics
# with ENV and times it until BENCH_CLICKS rows are written; checks the rows with SQL. Leaves
# the service running (ANALYTICS_PID, ANALYTICS_ADDR).
throughput() {
	local name="$1" label="$2" prefix="$3" fill_out addr t0 t_first="" rows_first=0 t_end="" rows=0 i polls
	local m="$WORK/metrics-$1.txt" busy0 total0 busy1 total1 cpu_an cpu_pg pg_pids secs steady rate
	shift 3
	"$CLICKLOAD_BIN" drop "$NATS_URL" "$prefix" >/dev/null || die "could not delete the streams of prefix $prefix"
	log "$label: pre-filling the click stream of prefix $prefix with $(fmt_int "$CLICKS") clicks"
	fill_out="$("$CLICKLOAD_BIN" fill "$NATS_URL" "$prefix" "$CLICKS" "$FILL_BATCH")" || die "clickload fill failed"
	log "$label: $fill_out"
	addr="127.0.0.1:$(free_port)"
	log "$label: starting shortline-analytics on $addr${*:+ with $*}"
	read -r busy0 total0 < <(machine_busy)
	t0=$(now)
	start_server "$name" DATABASE_URL="$BENCH_URL" NATS_URL="$NATS_URL" NATS_PREFIX="$prefix" \
		ANALYTICS_LISTEN="$addr" RUST_LOG=warn LOG_FORMAT=json "$@" -- "$ANALYTICS_BIN"
	ANALYTICS_PID=$SERVER_PID
	ANALYTICS_ADDR=$addr
	wait_health "$addr" "$ANALYTICS_PID" "$name"
	polls=$((DRAIN_TIMEOUT * 2))
	for ((i = 0; i < polls; i++)); do
		scrape "$addr" "$m"
		rows="$(metric "$m" "$ROWS_METRIC")"
		rows="${rows:-0}"
		if [[ -z $t_first ]] && awk -v r="$rows" 'BEGIN {exit !(r > 0)}'; then
			t_first=$(now)
			rows_first=$rows
		fi
		if awk -v r="$rows" -v n="$CLICKS" 'BEGIN {exit !(r >= n)}'; then
			t_end=$(now)
			break
		fi
		# One look at where the time goes, a few seconds into the drain.
		if ((i == 8)); then
			{
				printf '%s: top, %s s into the drain\n' "$label" "$(elapsed "$t0" "$(now)")"
				# The second frame: its %CPU covers the last second (the first covers all time).
				top -b -n 2 -d 1 -w 160 | awk '/^top -/ {n++} n == 2 && shown++ < 17'
				printf '%s: pg_stat_activity of %s\n' "$label" "$BENCH_DB"
				bench_sql "SELECT pid, state, wait_event_type, wait_event, left(regexp_replace(query, '\s+', ' ', 'g'), 60) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()" || true
			} >"$WORK/$name-top.txt" 2>&1
			sed "s/^/[bench-analytics]   /" "$WORK/$name-top.txt" >&2
		fi
		if ! pid_alive "$ANALYTICS_PID"; then
			show_log_tail "$WORK/$name.log"
			die "$label: shortline-analytics exited"
		fi
		sleep 0.5
	done
	read -r busy1 total1 < <(machine_busy)
	[[ -n $t_end ]] || {
		show_log_tail "$WORK/$name.log"
		die "$label: only $rows of $CLICKS rows written after $DRAIN_TIMEOUT s"
	}
	pg_pids="$(bench_sql "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name NOT LIKE 'psql%'" | tr '\n' ' ')"
	# shellcheck disable=SC2086  # one pid per word
	cpu_pg="$(cpu_seconds $pg_pids)"
	cpu_an="$(cpu_seconds "$ANALYTICS_PID")"
	secs="$(elapsed "$t0" "$t_end")"
	rate="$(awk -v n="$CLICKS" -v a="$t0" -v b="$t_end" 'BEGIN {printf "%.0f", n / (b - a)}')"
	steady="$(awk -v n="$CLICKS" -v r="$rows_first" -v a="$t_first" -v b="$t_end" 'BEGIN {if (b > a) printf "%.0f", (n - r) / (b - a); else print "-"}')"
	local writes batch_mean write_mean machine events stats hourly dups
	writes="$(metric "$m" shortline_analytics_batch_size_count)"
	batch_mean="$(awk -v s="$(metric "$m" shortline_analytics_batch_size_sum)" -v c="${writes:-0}" 'BEGIN {if (c > 0) printf "%.0f", s / c; else print "-"}')"
	write_mean="$(awk -v s="$(metric "$m" shortline_analytics_write_duration_seconds_sum)" -v c="$(metric "$m" shortline_analytics_write_duration_seconds_count)" 'BEGIN {if (c > 0) printf "%.0f ms", 1000 * s / c; else print "-"}')"
	dups="$(metric "$m" shortline_analytics_duplicates_total)"
	machine="$(awk -v b="$((busy1 - busy0))" -v t="$((total1 - total0))" -v n="$(nproc)" 'BEGIN {if (t > 0) printf "%.0f%% of %d cores", 100 * b / t, n}')"
	events="$(bench_sql "SELECT count(*) FROM events WHERE event_type = 'redirect'")"
	stats="$(bench_sql "SELECT coalesce(sum(redirect_count), 0) FROM link_stats")"
	hourly="$(bench_sql "SELECT coalesce(sum(redirect_count), 0) FROM link_stats_hourly")"
	log "$label: $(fmt_int "$CLICKS") rows in $secs s = $rate clicks/s (steady: $steady clicks/s after the first row); $(fmt_int "${writes:-0}") consumer batches (written in statements of at most ANALYTICS_BATCH_CLICKS), mean $batch_mean clicks / $write_mean each; CPU: analytics $cpu_an s, its PostgreSQL backends $cpu_pg s, machine $machine"
	log "$label: SQL: redirect rows in events = $events, sum(link_stats.redirect_count) = $stats, sum(link_stats_hourly.redirect_count) = $hourly (expected $CLICKS each)"
	local check="ok"
	if [[ $events != "$CLICKS" || $stats != "$CLICKS" || $hourly != "$CLICKS" ]]; then
		check="MISMATCH"
		FAILED=1
	fi
	THROUGHPUT_ROWS+=("| $label | $(fmt_int "$CLICKS") | $secs s | $(fmt_int "$rate") | $(fmt_int "$steady") | $(fmt_int "${writes:-0}") / $batch_mean / $write_mean | $cpu_an s / $cpu_pg s / $machine | $(fmt_int "$events") / $(fmt_int "$stats") / $(fmt_int "$hourly") $check | ${dups:-0} |")
	[[ $check == ok ]] || die "$label: SQL counts do not match $CLICKS (events $events, link_stats $stats, link_stats_hourly $hourly)"
	# The referrer / agent breakdowns trail: the rollup job folds rollup_backlog once the
	# consumer is no longer behind. Not part of the rate above; reported beside it.
	local backlog waited=0 referrers agents
	for ((i = 0; i < 240; i++)); do
		backlog="$(bench_sql "SELECT count(*) FROM rollup_backlog")"
		[[ $backlog == 0 ]] && break
		sleep 0.5
	done
	waited="$(elapsed "$t_end" "$(now)")"
	referrers="$(bench_sql "SELECT coalesce(sum(redirect_count), 0) FROM link_stats_referrers")"
	agents="$(bench_sql "SELECT coalesce(sum(redirect_count), 0) FROM link_stats_agents")"
	log "$label: breakdowns complete $waited s after the last row (backlog rows left: $backlog); sum of link_stats_referrers = $referrers, of link_stats_agents = $agents (expected $CLICKS each)"
	ROLLUP_ROWS+=("| $label | $waited s | $(fmt_int "$referrers") / $(fmt_int "$agents") $([[ $referrers == "$CLICKS" && $agents == "$CLICKS" ]] && echo ok || echo MISMATCH) |")
	if [[ $referrers != "$CLICKS" || $agents != "$CLICKS" ]]; then
		FAILED=1
	fi
}

# ---------------------------------------------------------------------------------------
# Backing servers: reuse running ones, start (and later stop) the others
# ---------------------------------------------------------------------------------------
reuse_or_start_servers postgres valkey nats

# ---------------------------------------------------------------------------------------
# Scratch database
# ---------------------------------------------------------------------------------------
scratch_db shortline_bench_analytics "$API_BIN"
# Streams left by an earlier, interrupted run.
drop_streams >/dev/null || die "could not delete old bench streams on $(redact_url "$NATS_URL")"

started_at=$(date +%s)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
if [[ $BUILD == 1 ]]; then
	built="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- services shared 2>/dev/null || echo ' + uncommitted changes in services/ or shared/')"
else
	built="binaries as found (BENCH_BUILD=0, shortline-analytics built $(date -u -r "$ANALYTICS_BIN" +%Y-%m-%dT%H:%M:%SZ))"
fi
HEADER="Analytics benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(uname -m)), $built${BENCH_LABEL:+ ($BENCH_LABEL)}"

# ---------------------------------------------------------------------------------------
# (1) Throughput, default config
# ---------------------------------------------------------------------------------------
throughput analytics "(1) default config" "$PREFIX"
load_after_drain="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# (2) Idle end-to-end latency, with the analytics service of (1)
# ---------------------------------------------------------------------------------------
url_id="$(bench_sql "INSERT INTO urls (user_id, short_code, original_url) VALUES (1, '$LAT_CODE', '$LAT_URL') RETURNING id")"
[[ $url_id =~ ^[0-9]+$ ]] || die "could not insert the latency link (got '$url_id')"
redirect_addr="127.0.0.1:$(free_port)"
log "(2) shortline-redirect on $redirect_addr (prefix $PREFIX), link $LAT_CODE = url_id $url_id"
start_server redirect DATABASE_URL="$BENCH_URL" VALKEY_URL="$VALKEY_URL" NATS_URL="$NATS_URL" \
	NATS_PREFIX="$PREFIX" REDIRECT_LISTEN="$redirect_addr" RUST_LOG=warn LOG_FORMAT=json -- "$REDIRECT_BIN"
REDIRECT_PID=$SERVER_PID
wait_health "$redirect_addr" "$REDIRECT_PID" redirect
status="$(curl -sS --max-time 5 -o /dev/null -w '%{http_code} %{redirect_url}' "http://$redirect_addr/$LAT_CODE")" ||
	die "GET /$LAT_CODE failed"
[[ $status == "302 $LAT_URL" ]] || die "GET /$LAT_CODE answered '$status', expected '302 $LAT_URL'"
# The spot check's click: wait until it is a row, so (2) starts idle. ANALYZE first: right
# after (1) the planner has no statistics for the million new rows and the tool's polling
# query (count of the link's events) would scan them all, timing the poll, not the pipeline.
bench_sql "ANALYZE events" >/dev/null
sleep 1
log "(2) $LAT_SAMPLES redirects at $LAT_RATE/s, each timed until its event row is visible"
latency_out="$("$CLICKLOAD_BIN" latency "http://$redirect_addr" "$BENCH_URL" "$LAT_CODE" "$url_id" "$LAT_SAMPLES" "$LAT_RATE")" ||
	die "clickload latency failed"
log "(2) $latency_out"
LAT_P50="$(sed -nE 's/.* p50 ([0-9.]+) ms.*/\1/p' <<<"$latency_out")"
LAT_P90="$(sed -nE 's/.* p90 ([0-9.]+) ms.*/\1/p' <<<"$latency_out")"
LAT_P99="$(sed -nE 's/.* p99 ([0-9.]+) ms.*/\1/p' <<<"$latency_out")"
LAT_MAX="$(sed -nE 's/.* max ([0-9.]+) ms.*/\1/p' <<<"$latency_out")"
[[ -n $LAT_P99 ]] || die "no p99 in the output of clickload latency: $latency_out"

# ---------------------------------------------------------------------------------------
# (3) Sustained redirect load: consumer lag while wrk runs
# ---------------------------------------------------------------------------------------
sleep 1
before="$(bench_sql "SELECT count(*) FROM events WHERE url_id = $url_id AND event_type = 'redirect'")"
scrape "$ANALYTICS_ADDR" "$WORK/m.txt"
rows_before="$(metric "$WORK/m.txt" "$ROWS_METRIC")"
log "(3) wrk -t1 -c$SUSTAIN_CONNS -d${SUSTAIN}s http://$redirect_addr/$LAT_CODE, sampling the consumer every 5 s"
wrk -t1 -c"$SUSTAIN_CONNS" -d"${SUSTAIN}s" --timeout 5s "http://$redirect_addr/$LAT_CODE" >"$WORK/wrk.txt" 2>&1 &
WRK_PID=$!
PIDS+=("$WRK_PID")
LAG_ROWS=()
t0=$(now)
max_pending=0 max_age=0
sample_lag() {
	local t rows pending ack age
	scrape "$ANALYTICS_ADDR" "$WORK/m.txt"
	t="$(elapsed "$t0" "$(now)")"
	rows="$(metric "$WORK/m.txt" "$ROWS_METRIC")"
	rows="$(fmt_int "$(awk -v a="${rows:-0}" -v b="${rows_before:-0}" 'BEGIN {print a - b}')")"
	pending="$(metric "$WORK/m.txt" "$PENDING_METRIC")"
	ack="$(metric "$WORK/m.txt" "$ACK_PENDING_METRIC")"
	age="$(metric "$WORK/m.txt" "$AGE_METRIC")"
	[[ -z $age ]] || age="$(awk -v a="$age" 'BEGIN {printf "%.1f", a}')"
	log "(3) t=${t}s ($1): rows written +$rows, pending ${pending:--}, ack pending ${ack:--}, oldest unacked ${age:--} s"
	LAG_ROWS+=("| $t s | $1 | $rows | ${pending:--} | ${ack:--} | ${age:--} |")
	max_pending="$(awk -v a="$max_pending" -v b="${pending:-0}" 'BEGIN {print (b > a ? b : a)}')"
	max_age="$(awk -v a="$max_age" -v b="${age:-0}" 'BEGIN {print (b > a ? b : a)}')"
}
next_sample=5
while pid_alive "$WRK_PID"; do
	if awk -v t="$(elapsed "$t0" "$(now)")" -v n="$next_sample" 'BEGIN {exit !(t >= n)}'; then
		sample_lag "wrk running"
		next_sample=$((next_sample + 5))
	fi
	sleep 0.2
done
wait "$WRK_PID" || {
	cat "$WORK/wrk.txt" >&2
	die "wrk failed"
}
WRK_RPS="$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/wrk.txt")"
WRK_TOTAL="$(awk '/ requests in / {print $1}' "$WORK/wrk.txt")"
WRK_BAD="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$WORK/wrk.txt")"
WRK_BAD="${WRK_BAD:-0}"
WRK_SOCKET="$(sed -nE 's/.*Socket errors: (.*)/\1/p' "$WORK/wrk.txt")"
WRK_LAT="$(awk '/^ *Latency / {print $2 " avg, " $3 " stdev, " $4 " max"}' "$WORK/wrk.txt")"
[[ $WRK_TOTAL =~ ^[0-9]+$ ]] || {
	cat "$WORK/wrk.txt" >&2
	die "no request count in wrk's output"
}
log "(3) wrk: $WRK_TOTAL requests, $WRK_RPS req/s, latency $WRK_LAT, non-2xx/3xx: $WRK_BAD${WRK_SOCKET:+, socket errors: $WRK_SOCKET}"
expected=$((WRK_TOTAL - WRK_BAD))
# Let the last clicks through (redirect linger + analytics batch wait), then the lag gauges.
settle_start=$(now)
got=0
for ((i = 0; i < 60; i++)); do
	got="$(bench_sql "SELECT count(*) FROM events WHERE url_id = $url_id AND event_type = 'redirect'")"
	got=$((got - before))
	((got >= expected)) && break
	sleep 0.5
done
SETTLE="$(elapsed "$settle_start" "$(now)")"
sleep 0.5
got="$(bench_sql "SELECT count(*) FROM events WHERE url_id = $url_id AND event_type = 'redirect'")"
got=$((got - before))
# The gauges refresh every 5 s: one sample after the drain shows them back at 0.
sleep 5
sample_lag "after wrk"
in_flight=$((got - expected))
if ((got == expected)); then
	SUSTAIN_CHECK="equal"
elif ((in_flight > 0 && in_flight <= SUSTAIN_CONNS)); then
	# wrk stops counting with up to one request per connection in flight; the service answered
	# (and recorded) those too.
	SUSTAIN_CHECK="+$in_flight (requests in flight when wrk stopped; at most $SUSTAIN_CONNS)"
else
	SUSTAIN_CHECK="MISMATCH ($in_flight)"
	FAILED=1
fi
log "(3) new event rows for url_id $url_id: $got, 302s counted by wrk: $expected ($SUSTAIN_CHECK), settled in $SETTLE s"
load_after_sustain="$(cut -d' ' -f1-3 /proc/loadavg)"
terminate_pid "$REDIRECT_PID" shortline-redirect
terminate_pid "$ANALYTICS_PID" shortline-analytics

# ---------------------------------------------------------------------------------------
# (4) Throughput with bigger batches
# ---------------------------------------------------------------------------------------
if [[ $TUNED == 1 ]]; then
	bench_sql "TRUNCATE events, link_stats, link_stats_hourly, link_stats_referrers, link_stats_agents, rollup_backlog" >/dev/null
	throughput analytics-tuned "(4) ${TUNED_ENV[*]}" "$TUNED_PREFIX" "${TUNED_ENV[@]}"
	terminate_pid "$ANALYTICS_PID" shortline-analytics
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
verdict() { awk -v v="$1" -v t="$2" -v dir="$3" 'BEGIN {ok = (dir == "min" ? v >= t : v <= t); print (ok ? "met" : "NOT met")}'; }
report() {
	local tp="${THROUGHPUT_ROWS[0]}" rate
	rate="$(cut -d'|' -f5 <<<"$tp" | tr -d ' ,')"
	printf '%s\n\n' "$HEADER"
	printf 'Throughput: %s clicks pre-filled in JetStream (%s per message), then shortline-analytics started; time from its start to the /metrics poll (every 0.5 s) that showed every row written.\n\n' \
		"$(fmt_int "$CLICKS")" "$FILL_BATCH"
	printf '| configuration | clicks | time | clicks/s | clicks/s after the first row | consumer batches / mean clicks / mean write time | CPU: analytics / its PG backends / machine | SQL: events / link_stats / hourly | duplicates |\n'
	printf '| --- | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |\n'
	printf '%s\n' "${THROUGHPUT_ROWS[@]}"
	printf '\nTarget >= 50,000 clicks/s (default config): %s.\n\n' "$(verdict "$rate" 50000 min)"
	printf 'Breakdowns (referrers, agents: folded from rollup_backlog by the rollup job, which defers while the consumer is behind), complete after the last event row:\n\n'
	printf '| configuration | complete after | SQL: sum(link_stats_referrers) / sum(link_stats_agents) |\n'
	printf '| --- | ---: | --- |\n'
	printf '%s\n' "${ROLLUP_ROWS[@]}"
	printf '\n'
	printf 'Idle end-to-end latency (redirect -> event row visible in PostgreSQL), %s redirects at %s/s: p50 %s ms, p90 %s ms, p99 %s ms, max %s ms. Target p99 <= 50 ms: %s.\n\n' \
		"$LAT_SAMPLES" "$LAT_RATE" "$LAT_P50" "$LAT_P90" "$LAT_P99" "$LAT_MAX" "$(verdict "$LAT_P99" 50 max)"
	printf 'Sustained: wrk -t1 -c%s -d%ss on one code: %s req/s, %s requests, non-2xx/3xx %s%s; consumer gauges (refreshed every 5 s by the service):\n\n' \
		"$SUSTAIN_CONNS" "$SUSTAIN" "$(fmt_int "$WRK_RPS")" "$(fmt_int "$WRK_TOTAL")" "$WRK_BAD" "${WRK_SOCKET:+, socket errors $WRK_SOCKET}"
	printf '| t | phase | rows written since wrk start | pending | ack pending | oldest unacked (s) |\n'
	printf '| ---: | --- | ---: | ---: | ---: | ---: |\n'
	printf '%s\n' "${LAG_ROWS[@]}"
	printf '\nHighest pending: %s messages, highest oldest-unacked age: %s s. New event rows for the link: %s vs %s 302s from wrk: %s (settled %s s after wrk ended).\n\n' \
		"$max_pending" "$max_age" "$(fmt_int "$got")" "$(fmt_int "$expected")" "$SUSTAIN_CHECK" "$SETTLE"
	printf 'Runs took %s s; load average (1/5/15 min) before: %s, after (1): %s, after (3): %s, at the end: %s (everything else on the machine competes for the same cores).\n' \
		"$(($(date +%s) - started_at))" "$load_before" "$load_after_drain" "$load_after_sustain" "$load_after"
	if [[ $FAILED == 1 ]]; then
		printf '\nWARNING: a count check failed; see the log above.\n'
	fi
}
printf '\n'
report
if [[ -n $OUT ]]; then
	report >"$OUT"
	log "report written to $OUT"
fi
[[ $FAILED == 0 ]] || exit 1
