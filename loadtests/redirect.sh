#!/usr/bin/env bash
# Redirect benchmarks (issue #3): the real `shortline-redirect` next to a bare hyper 302 server
# (services/redirect/examples/bare302.rs), in one run on one machine, with wrk.
#
#   loadtests/redirect.sh          # about 4 minutes with the defaults
#
# Measures, each after a short warm-up at the same concurrency, GET /{code} with a code picked
# at random per request among the active links of 100,000 seeded ones (loadtests/redirect.lua):
#   (a) bare302                                         at each of BENCH_CONNECTIONS
#   (b) shortline-redirect, default config             at each of BENCH_CONNECTIONS (after a
#       fill pass that walks every code in order)
#   (c) shortline-redirect, REDIRECT_L1_CAPACITY=0 (every request asks Valkey)
#                                                       at each of BENCH_MISS_CONNECTIONS
#   (d) shortline-redirect, REDIRECT_L1_CAPACITY=0 VALKEY_URL= (every request asks PostgreSQL)
#                                                       at each of BENCH_MISS_CONNECTIONS
# (a) and (b) run side by side and are measured in turns: BENCH_ROUNDS rounds at each
# concurrency, each round (a) then (b), so both see the same machine (whatever else runs on
# it moves their req/s together); their rows give the median req/s, p50 and p99 over the
# rounds, and (b)'s ratio is the median (min–max) of its req/s over (a)'s in the same round.
# With BENCH_COMPARE_BIN, a second shortline-redirect binary (b') (an older build, say) runs
# beside them with the same configuration, cache fill and rounds: each round measures (a),
# then (b) and (b') in alternating order, so a before/after comparison sees one machine; the
# report adds the median (min–max) of (b) over (b') and the change of the ratio to bare302.
# Plus, for (a) and (b), one paced row at the last of BENCH_CONNECTIONS: every connection
# waits after each response so that wrk offers about BENCH_PACED_RATE req/s, and p99 is the
# latency at that load instead of queueing at saturation (closed loop, so still a lower
# bound under overload).
# The markdown table it prints has, per row: req/s, p50, p99, req/s relative to bare302 at
# the same concurrency, the server's CPU time per request (utime + stime from /proc/PID/stat
# over the measured runs, divided by the requests wrk completed in them), the CPU per request
# that wrk (bash `time`) and the local nats-server (its /proc/PID/stat, found by the port it
# listens on) spent in the same runs (the machine's cores are shared by all three), the
# X-Cache header of a spot check after the runs, and each server's VmRSS / VmHWM (from
# /proc/PID/status) after its runs. Under the table: the in-process hot-path benchmark
# (services/redirect/examples/hotpath.rs) on the same links, which times the service's own
# code per cached redirect without the kernel and wrk.
# Click events stay on (NATS, prefix `bench`).
#
# Settings (environment):
#   BENCH_DURATION=10           seconds per measurement
#   BENCH_WARMUP=2              seconds of warm-up before each measurement
#   BENCH_ROUNDS=3              rounds of (a) then (b) at each of BENCH_CONNECTIONS
#   BENCH_HOTPATH_LOOKUPS=500000  codes per round of the in-process hot-path benchmark run at
#                               the end (services/redirect/examples/hotpath.rs; 0 skips it)
#   BENCH_FILL=60               at most this many seconds of in-order fill passes before (b),
#                               run 5 s at a time until every code has been requested once
#   BENCH_THREADS=2             wrk -t
#   BENCH_CONNECTIONS="64 256"  wrk -c for (a) and (b)
#   BENCH_PACED_RATE=20000      offered req/s of the paced rows (0: no paced rows)
#   BENCH_MISS_CONNECTIONS=64   wrk -c for (c) and (d) ("" skips them)
#   BENCH_LINKS=100000          links seeded (1,000 users)
#   BENCH_BUILD=1               cargo build --release first (0: use the binaries as they are)
#   BENCH_REDIRECT_BIN=PATH     benchmark this shortline-redirect binary instead of the one in
#                               ${CARGO_TARGET_DIR:-target}/release (e.g. an older build, to compare)
#   BENCH_COMPARE_BIN=PATH      also measure this shortline-redirect binary as (b'), in the same
#                               rounds as (a) and (b) (see above)
#   BENCH_API_BIN=PATH          shortline-api used for migrate + seed (default: the same place)
#   BENCH_RUST_LOG=warn         RUST_LOG of the service (info: one access-log line per request,
#                               as in production; the lines go to a file in the scratch folder;
#                               LOG_FLUSH_MS from the environment passes through)
#   BENCH_LABEL=TEXT            a note for the header of the report
#   BENCH_OUT=FILE              also write the table (with its header lines) to FILE
#   BENCH_KEEP=0                1: keep the scratch database and the bench JetStream streams
#
# Uses the local PostgreSQL, Valkey and NATS (or DATABASE_URL / VALKEY_URL / NATS_URL): servers
# already running are reused; servers it has to start (scripts/servers.sh) are stopped at exit.
# Works in a scratch database `shortline_bench_redirect` (dropped and re-created), runs every
# server on a free loopback port, and stops what it started by pid. Needs wrk (installed with
# apt-get when missing and running as root), curl and python3.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# shellcheck source=loadtests/lib.sh
source "$ROOT/loadtests/lib.sh"
SHORTLINE_LOG_TAG=bench

DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
ROUNDS="${BENCH_ROUNDS:-3}"
HOTPATH_LOOKUPS="${BENCH_HOTPATH_LOOKUPS:-500000}"
FILL="${BENCH_FILL:-60}"
THREADS="${BENCH_THREADS:-2}"
read -r -a CONNS <<<"${BENCH_CONNECTIONS:-64 256}"
PACED_RATE="${BENCH_PACED_RATE:-20000}"
read -r -a MISS_CONNS <<<"${BENCH_MISS_CONNECTIONS-64}"
LINKS="${BENCH_LINKS:-100000}"
USERS=1000
BUILD="${BENCH_BUILD:-1}"
OUT="${BENCH_OUT:-}"
PREFIX=bench
LUA="$ROOT/loadtests/redirect.lua"

for v in DURATION WARMUP ROUNDS FILL THREADS LINKS PACED_RATE HOTPATH_LOOKUPS; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_$v must be a whole number (got '${!v}')"
done
((DURATION > 0 && ROUNDS > 0 && THREADS > 0 && LINKS > 0)) || die "BENCH_DURATION, BENCH_ROUNDS, BENCH_THREADS and BENCH_LINKS must be > 0"
for c in "${CONNS[@]}" "${MISS_CONNS[@]}"; do
	if ! [[ $c =~ ^[0-9]+$ ]] || ((c < THREADS)); then
		die "connection counts must be whole numbers >= BENCH_THREADS ($THREADS), got '$c'"
	fi
done
((${#CONNS[@]} > 0)) || die "BENCH_CONNECTIONS is empty"

# ---------------------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------------------
require_commands curl python3
ensure_wrk
find_psql

TARGET="$(cargo_target)"
API_BIN="${BENCH_API_BIN:-$TARGET/release/shortline-api}"
REDIRECT_BIN="${BENCH_REDIRECT_BIN:-$TARGET/release/shortline-redirect}"
COMPARE_BIN="${BENCH_COMPARE_BIN:-}"
BARE_BIN="$TARGET/release/examples/bare302"
CLICKLOAD_BIN="$TARGET/release/examples/clickload"
HOTPATH_BIN="$TARGET/release/examples/hotpath"
if [[ $BUILD == 1 ]]; then
	log "building release binaries (BENCH_BUILD=0 skips this)"
	cargo build -q --release -p shortline-api -p shortline-redirect || die "cargo build failed"
	cargo build -q --release -p shortline-redirect --example bare302 --example hotpath || die "cargo build of the bare302 and hotpath examples failed"
	cargo build -q --release -p shortline-analytics --example clickload || die "cargo build of the clickload example failed"
fi
for b in "$API_BIN" "$REDIRECT_BIN" "$BARE_BIN" "$CLICKLOAD_BIN" "$HOTPATH_BIN" ${COMPARE_BIN:+"$COMPARE_BIN"}; do
	[[ -x $b ]] || die "$b not found: cargo build --release -p shortline-api -p shortline-redirect && cargo build --release -p shortline-redirect --example bare302 --example hotpath && cargo build --release -p shortline-analytics --example clickload"
done

# ---------------------------------------------------------------------------------------
# Cleanup: what this script started, by pid
# ---------------------------------------------------------------------------------------
bench_workdir redirect
# The bench JetStream streams (bench_cleanup drops them at exit unless BENCH_KEEP=1).
bench_drop_extra() { nats_streams drop; }

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

# nats_streams count|drop: the JetStream streams of $PREFIX (clickload, see
# services/analytics/examples/clickload.rs): count prints their total message count, drop
# deletes them (prints their names).
nats_streams() { "$CLICKLOAD_BIN" "$1" "$NATS_URL" "$PREFIX"; }

# check_redirect ADDR [EXPECTED_LOCATION]: GET /CHECK_CODE must answer 302 (with that Location
# when given); prints the X-Cache header.
check_redirect() {
	local addr="$1" want="${2:-}" headers status location xcache
	headers="$(curl -sS --max-time 5 -o /dev/null -D - "http://$addr/$CHECK_CODE")" ||
		die "GET http://$addr/$CHECK_CODE failed"
	status="$(awk 'NR==1 {print $2}' <<<"$headers")"
	location="$(awk 'tolower($1)=="location:" {sub(/\r$/, "", $2); print $2}' <<<"$headers")"
	xcache="$(awk 'tolower($1)=="x-cache:" {sub(/\r$/, "", $2); print $2}' <<<"$headers")"
	[[ $status == 302 ]] || die "GET /$CHECK_CODE on $addr answered $status, not 302"
	[[ -z $want || $location == "$want" ]] ||
		die "GET /$CHECK_CODE on $addr redirected to '$location', expected '$want'"
	printf '%s\n' "${xcache:--}"
}

# run_wrk LABEL ADDR CONNECTIONS SECONDS MODE [START [DELAY_MS]]: one wrk run; sets RPS P50
# P99 (µs) (and SEQ_NEXT in seq mode) and warns about errors. DELAY_MS > 0 paces each
# connection (see redirect.lua). Full wrk output in $WORK/wrk-LABEL.txt.
run_wrk() {
	local label="$1" addr="$2" conns="$3" secs="$4" mode="$5" start="${6:-0}" delay="${7:-0}" out="$WORK/wrk-$1.txt" result
	local TIMEFORMAT='%U %S'
	{ time wrk -t"$THREADS" -c"$conns" -d"${secs}s" --timeout 5s --latency -s "$LUA" "http://$addr" \
		-- "$CODES" "$mode" "$THREADS" "$start" "$delay" >"$out" 2>&1; } 2>"$out.cpu" || {
		cat "$out" >&2
		die "wrk failed ($label)"
	}
	# wrk's own CPU time (user + system), in clock ticks like proc_cpu_ticks.
	WRK_TICKS="$(awk -v hz="$CLK_TCK" '{printf "%d", ($1 + $2) * hz}' "$out.cpu")"
	result="$(grep '^RESULT ' "$out" | tail -n 1)" || {
		cat "$out" >&2
		die "no RESULT line from wrk ($label)"
	}
	RPS="$(sed -E 's/.* rps=([0-9.]+).*/\1/' <<<"$result")"
	REQUESTS="$(sed -E 's/.*RESULT requests=([0-9]+).*/\1/' <<<"$result")"
	P50="$(sed -E 's/.* p50_us=([0-9]+).*/\1/' <<<"$result")"
	P99="$(sed -E 's/.* p99_us=([0-9]+).*/\1/' <<<"$result")"
	local status_errors socket_errors
	status_errors="$(sed -E 's/.* status_errors=([0-9]+).*/\1/' <<<"$result")"
	socket_errors="$(sed -E 's/.* socket_errors=([0-9]+).*/\1/' <<<"$result")"
	log "$label: ${result#RESULT }"
	SEQ_NEXT="$(sed -nE 's/^SEQ next=([0-9]+)$/\1/p' "$out" | tail -n 1)"
	if ((status_errors > 0 || socket_errors > 0)); then
		log "warning: $label had $status_errors responses >= 400 and $socket_errors socket errors (see below)"
		grep -E 'Socket errors|Non-2xx' "$out" >&2 || true
		ERRORS_SEEN=1
	fi
}

ms() { awk -v us="$1" 'BEGIN {printf "%.2f ms", us / 1000}'; }
fmt_rps() { awk -v r="$1" 'BEGIN {printf "%.0f", r}'; }

# proc_cpu_ticks PID: CPU time (user + system) the process has used, in clock ticks.
CLK_TCK="$(getconf CLK_TCK)"
proc_cpu_ticks() {
	# Fields after the parenthesised command name: utime is the 12th, stime the 13th.
	sed -E 's/^.*\) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# nats_ticks: CPU ticks of the nats-server listening on NATS_URL's port (empty when it is not
# a local process this script can see).
NATS_PID=""
nats_ticks() { [[ -n $NATS_PID ]] && proc_cpu_ticks "$NATS_PID" 2>/dev/null || true; }

# cpu_per_request TICKS REQUESTS: "12.3 µs".
cpu_per_request() {
	awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN {if (n > 0) printf "%.1f µs", t / hz * 1e6 / n; else print "–"}'
}

# proc_mem PID: "VmRSS / VmHWM" in MiB.
proc_mem() {
	awk '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2} END {printf "%.1f / %.1f MiB", r / 1024, h / 1024}' \
		"/proc/$1/status"
}

declare -A BARE_RPS=()
ROWS=()
COMPARISONS=()
ERRORS_SEEN=0

# median NUMBER...: the median (the mean of the middle two for an even count).
median() {
	printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# median_list LIST: the median of a space-separated list.
median_list() {
	local -a xs
	read -r -a xs <<<"$1"
	median "${xs[@]}"
}

# measured_run LABEL ADDR PID CONNECTIONS [DELAY_MS]: one measured wrk run (paced when DELAY_MS
# > 0, see run_wrk); sets RPS P50 P99 REQUESTS (run_wrk) and the CPU ticks spent in it by the
# server PID (RUN_TICKS), wrk (WRK_TICKS) and the local nats-server (RUN_NATS; empty when
# unknown).
measured_run() {
	local label="$1" addr="$2" pid="$3" c="$4" delay="${5:-0}" ticks nats
	ticks="$(proc_cpu_ticks "$pid")"
	nats="$(nats_ticks)"
	run_wrk "$label" "$addr" "$c" "$DURATION" random 0 "$delay"
	RUN_TICKS=$(($(proc_cpu_ticks "$pid") - ticks))
	RUN_NATS=""
	[[ -n $nats ]] && RUN_NATS=$(($(nats_ticks) - nats))
	return 0
}

# one_run LABEL ADDR PID CONNECTIONS: a warm-up, then one measured_run.
one_run() {
	local label="$1" addr="$2" pid="$3" c="$4"
	if ((WARMUP > 0)); then
		run_wrk "$label-c$c-warmup" "$addr" "$c" "$WARMUP" random
	fi
	measured_run "$label-c$c" "$addr" "$pid" "$c"
}

# Per-server sums and lists over the rounds of one concurrency (see add_round / round_row).
declare -A SUM=()
declare -A LIST=()
reset_rounds() { SUM=() LIST=(); }

# add_round KEY: adds the run just made (measured_run) to KEY's rounds.
add_round() {
	local k="$1"
	LIST[$k.rps]+=" $RPS" LIST[$k.p50]+=" $P50" LIST[$k.p99]+=" $P99"
	SUM[$k.req]=$((${SUM[$k.req]:-0} + REQUESTS))
	SUM[$k.srv]=$((${SUM[$k.srv]:-0} + RUN_TICKS))
	SUM[$k.wrk]=$((${SUM[$k.wrk]:-0} + WRK_TICKS))
	if [[ -n $RUN_NATS ]]; then
		SUM[$k.nats]=$((${SUM[$k.nats]:-0} + RUN_NATS))
	fi
}

# round_row KEY CONFIG CONNECTIONS RATIO SERVER: the table row of KEY's rounds (medians of
# req/s, p50 and p99; CPU per request over all rounds); SERVER's memory and X-Cache are
# filled in later (finish_rows).
round_row() {
	local k="$1" config="$2" c="$3" ratio="$4" server="$5" cpu nats="–" rps p50 p99
	rps="$(median_list "${LIST[$k.rps]}")"
	p50="$(median_list "${LIST[$k.p50]}")"
	p99="$(median_list "${LIST[$k.p99]}")"
	[[ -n ${SUM[$k.nats]:-} ]] && nats="$(cpu_per_request "${SUM[$k.nats]}" "${SUM[$k.req]}")"
	cpu="$(cpu_per_request "${SUM[$k.srv]}" "${SUM[$k.req]}") | $(cpu_per_request "${SUM[$k.wrk]}" "${SUM[$k.req]}") | $nats"
	ROWS+=("| $config | $c | $(fmt_rps "$rps") | $(ms "$p50") | $(ms "$p99") | $ratio | $cpu | @XCACHE-$server@ | @MEM-$server@ |")
	RPS="$rps"
}

# ratio_of A B: A / B to three decimals.
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a / b}'; }

# ratio_cell RATIO...: "**median** (min–max)" of the rounds' ratios (just the median for one).
ratio_cell() {
	local m lo hi
	m="$(awk -v m="$(median "$@")" 'BEGIN {printf "%.2f", m}')"
	(($# > 1)) || {
		printf '%s' "$m"
		return
	}
	lo="$(printf '%s\n' "$@" | sort -g | head -n 1)"
	hi="$(printf '%s\n' "$@" | sort -g | tail -n 1)"
	printf '**%s** (%s)' "$m" "$(awk -v l="$lo" -v h="$hi" 'BEGIN {printf "%.2f–%.2f", l, h}')"
}

# measure_pair CONNECTIONS: ROUNDS rounds at CONNECTIONS, each the bare server then the service
# (each with its own warm-up), so that both see the same machine; one row each: medians over
# the rounds, and for the service the median (min–max) of its req/s over the bare server's of
# the same round. With BENCH_COMPARE_BIN, (b') is measured in each round too, (b) and (b')
# taking turns to go first, and COMPARISONS gets a line for this concurrency.
measure_pair() {
	local c="$1" r ratios=() cratios=() versus=() deltas=() order
	reset_rounds
	for ((r = 1; r <= ROUNDS; r++)); do
		one_run "bare302-r$r" "$BARE_ADDR" "$BARE_PID" "$c"
		add_round bare
		local bare_rps="$RPS" b_rps="" c_rps=""
		order="redirect compare"
		((r % 2 == 0)) && order="compare redirect"
		for which in $order; do
			if [[ $which == redirect ]]; then
				one_run "redirect-r$r" "$REDIRECT_ADDR" "$REDIRECT_PID" "$c"
				add_round redirect
				b_rps="$RPS"
			elif [[ -n $COMPARE_BIN ]]; then
				one_run "compare-r$r" "$COMPARE_ADDR" "$COMPARE_PID" "$c"
				add_round compare
				c_rps="$RPS"
			fi
		done
		ratios+=("$(ratio_of "$b_rps" "$bare_rps")")
		if [[ -n $COMPARE_BIN ]]; then
			cratios+=("$(ratio_of "$c_rps" "$bare_rps")")
			versus+=("$(ratio_of "$b_rps" "$c_rps")")
			deltas+=("$(awk -v a="${ratios[-1]}" -v b="${cratios[-1]}" 'BEGIN {printf "%.3f", a - b}')")
			log "round $r at c$c: (b) / (a) = ${ratios[-1]}, (b') / (a) = ${cratios[-1]}, (b) / (b') = ${versus[-1]}"
		else
			log "round $r at c$c: (b) / (a) = ${ratios[-1]}"
		fi
	done
	round_row bare "(a) bare302 (hyper, fixed 302)" "$c" "1.00" bare
	BARE_RPS[$c]="$RPS"
	round_row redirect "(b) shortline-redirect, default config" "$c" "$(ratio_cell "${ratios[@]}")" redirect
	if [[ -n $COMPARE_BIN ]]; then
		round_row compare "(b') $(basename "$COMPARE_BIN"), default config" "$c" "$(ratio_cell "${cratios[@]}")" compare
		COMPARISONS+=("c$c: (b) / (b') req/s $(ratio_cell "${versus[@]}"); ratio to bare302 (b) minus (b') $(awk -v m="$(median "${deltas[@]}")" 'BEGIN {printf "%+.3f", m}') median over the rounds (each: ${deltas[*]})")
	fi
}

# measure CONFIG LABEL ADDR CONNECTIONS...: warm-up + one measured run at each concurrency, one
# table row each (memory is filled in by finish_rows); CPU is that of $SERVER_PID; req/s is
# compared with the bare server's median at the same concurrency.
measure() {
	local config="$1" label="$2" addr="$3" c ratio
	shift 3
	for c in "$@"; do
		reset_rounds
		one_run "$label" "$addr" "$SERVER_PID" "$c"
		add_round "$label"
		if [[ -n ${BARE_RPS[$c]:-} ]]; then
			ratio="$(awk -v a="$RPS" -v b="${BARE_RPS[$c]}" 'BEGIN {printf "%.2f", a / b}')"
		else
			ratio="–"
		fi
		round_row "$label" "$config" "$c" "$ratio" "$label"
	done
}

# measure_paced CONFIG LABEL ADDR PID CONNECTIONS: one row at a fixed offered load of about
# PACED_RATE req/s over CONNECTIONS connections (each waits DELAY_MS after a response), so
# that p99 is the server's latency at that load rather than queueing at saturation.
measure_paced() {
	local config="$1" label="$2" addr="$3" pid="$4" c="$5" delay
	((PACED_RATE > 0)) || return 0
	delay=$(((1000 * c + PACED_RATE - 1) / PACED_RATE))
	reset_rounds
	measured_run "$label-c$c-paced" "$addr" "$pid" "$c" "$delay"
	add_round paced
	round_row paced "$config, paced (${delay} ms between requests per connection)" "$c" "–" "$label"
}

# finish_rows SERVER XCACHE MEM: fill in SERVER's placeholders in the rows.
finish_rows() {
	local i
	for ((i = 0; i < ${#ROWS[@]}; i++)); do
		ROWS[i]="${ROWS[i]/@XCACHE-$1@/$2}"
		ROWS[i]="${ROWS[i]/@MEM-$1@/$3}"
	done
}

# ---------------------------------------------------------------------------------------
# Backing servers: reuse running ones, start (and later stop) the others
# ---------------------------------------------------------------------------------------
reuse_or_start_servers postgres valkey nats

# ---------------------------------------------------------------------------------------
# Scratch database with LINKS links
# ---------------------------------------------------------------------------------------
scratch_db shortline_bench_redirect "$API_BIN"
python3 scripts/gen_demo_data.py --out "$WORK/data" --users "$USERS" --links "$LINKS" \
	--events-per-link 1 --seed 3 2>&1 | sed 's/^/  /' >&2
seed_start=$(date +%s.%N)
DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$API_BIN" seed "$WORK/data" >"$WORK/seed.log" 2>&1 || {
	cat "$WORK/seed.log" >&2
	die "shortline-api seed failed"
}
log "seeded $LINKS links in $(awk -v a="$seed_start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"

# The codes of active links, one per line, and one code + URL for the spot checks.
CODES="$WORK/codes.txt"
read -r CHECK_CODE CHECK_URL < <(python3 - "$WORK/data/urls.csv" "$CODES" <<'PY'
import csv, sys

first = None
n = 0
with open(sys.argv[1], newline="", encoding="utf-8") as f, open(sys.argv[2], "w") as out:
    for row in csv.DictReader(f):
        if row["is_active"] == "True":
            out.write(row["short_code"] + "\n")
            n += 1
            first = first or (row["short_code"], row["original_url"])
if not n:
    sys.exit("no active links in urls.csv")
print(*first)
PY
) || die "could not extract the codes of active links from $WORK/data/urls.csv"
n_codes=$(wc -l <"$CODES")
db_links="$(PGOPTIONS='-c statement_timeout=30000' "$PSQL" -X -q -A -t "$BENCH_URL" -c 'SELECT count(*) FROM urls WHERE is_active')"
[[ $db_links == "$n_codes" ]] || die "the database has $db_links active links, the codes file $n_codes"
log "codes: $n_codes active links"

# Streams left by an earlier, interrupted run would inflate the click count.
nats_streams drop >/dev/null 2>&1 || log "warning: could not list JetStream streams on $(redact_url "$NATS_URL")"
# The local nats-server's pid (for its CPU per request), from the process listening on NATS_URL's
# port; none when NATS runs elsewhere or ss cannot tell.
nats_port="$(sed -nE 's#^([a-z]+://)?([^@/]*@)?(127\.0\.0\.1|localhost|\[::1\]):([0-9]+).*#\4#p' <<<"$NATS_URL")"
if [[ -n $nats_port ]] && command -v ss >/dev/null; then
	NATS_PID="$(ss -Hltnp "sport = :$nats_port" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2)" || NATS_PID=""
fi
[[ -n $NATS_PID && -r /proc/$NATS_PID/stat ]] || NATS_PID=""
log "nats-server pid for CPU accounting: ${NATS_PID:-none found}"

# ---------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------
started_at=$(date +%s)
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
if [[ -n ${BENCH_REDIRECT_BIN:-} ]]; then
	built="shortline-redirect from $REDIRECT_BIN"
elif [[ $BUILD == 1 ]]; then
	built="commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- services shared 2>/dev/null || echo ' + uncommitted changes in services/ or shared/')"
else
	built="shortline-redirect as found (BENCH_BUILD=0, built $(date -u -r "$REDIRECT_BIN" +%Y-%m-%dT%H:%M:%SZ))"
fi
HEADER="Redirect benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores ($(uname -m)), $built${BENCH_LABEL:+ ($BENCH_LABEL)}"
FILL_NOTE="no fill pass (BENCH_FILL=0)"

REDIRECT_ENV=(DATABASE_URL="$BENCH_URL" NATS_URL="$NATS_URL" NATS_PREFIX="$PREFIX" RUST_LOG="${BENCH_RUST_LOG:-warn}" LOG_FORMAT=json)

# start_redirect CONFIG LABEL ENV...: starts shortline-redirect with ENV on a free port; sets
# SERVER_PID and ADDR.
start_redirect() {
	local config="$1" label="$2"
	shift 2
	ADDR="127.0.0.1:$(free_port)"
	log "$config on $ADDR"
	start_server "$label" "${REDIRECT_ENV[@]}" REDIRECT_LISTEN="$ADDR" "$@" -- "$REDIRECT_BIN"
	wait_health "$ADDR" "$SERVER_PID" "$label"
	check_redirect "$ADDR" "$CHECK_URL" >/dev/null
}

# fill_cache LABEL ADDR CONNECTIONS: in-order passes of up to 5 s, each going on where the last
# stopped, until every code has been requested once (or BENCH_FILL seconds are used up).
fill_cache() {
	local label="$1" addr="$2" c="$3" next=0 spent=0 chunk i=0
	((FILL > 0)) || return 0
	while ((next < n_codes && spent < FILL)); do
		chunk=$((FILL - spent < 5 ? FILL - spent : 5))
		i=$((i + 1))
		run_wrk "$label-fill$i" "$addr" "$c" "$chunk" seq "$next"
		[[ $SEQ_NEXT =~ ^[0-9]+$ ]] || die "no SEQ line from wrk ($label-fill$i)"
		next="$SEQ_NEXT"
		spent=$((spent + chunk))
	done
	if ((next >= n_codes)); then
		FILL_NOTE="in-order fill passes that requested every code once (${spent} s)"
		log "$label: fill passes requested every code in ${spent} s"
	else
		FILL_NOTE="in-order fill passes that reached only $next of $n_codes codes in ${spent} s"
		log "warning: $label: fill passes reached only $next of $n_codes codes in ${spent} s (raise BENCH_FILL)"
	fi
}

# stop_redirect LABEL ADDR PID: logs what the service counted about clicks, fills in its
# X-Cache and memory, stops it.
stop_redirect() {
	local label="$1" addr="$2" pid="$3" xcache
	xcache="$(check_redirect "$addr" "$CHECK_URL")"
	curl -fsS --max-time 5 "http://$addr/metrics" 2>/dev/null | grep -i click | grep -v -e '^#' -e '_bucket' |
		sed "s/^/[bench] $label metrics: /" >&2 || true
	finish_rows "$label" "$xcache" "$(proc_mem "$pid")"
	terminate_pid "$pid"
}

# (a) bare302 and (b) the service with its default configuration, both up, measured in turns.
BARE_ADDR="127.0.0.1:$(free_port)"
log "(a) bare302 on $BARE_ADDR"
start_server bare302 -- "$BARE_BIN" "$BARE_ADDR"
BARE_PID="$SERVER_PID"
wait_health "$BARE_ADDR" "$BARE_PID" bare302
start_redirect "(b) shortline-redirect, default config" redirect VALKEY_URL="$VALKEY_URL"
REDIRECT_ADDR="$ADDR" REDIRECT_PID="$SERVER_PID"
fill_cache redirect "$REDIRECT_ADDR" "${CONNS[0]}"
if [[ -n $COMPARE_BIN ]]; then
	REDIRECT_BIN="$COMPARE_BIN" start_redirect "(b') $(basename "$COMPARE_BIN"), default config" compare VALKEY_URL="$VALKEY_URL"
	COMPARE_ADDR="$ADDR" COMPARE_PID="$SERVER_PID"
	fill_cache compare "$COMPARE_ADDR" "${CONNS[0]}"
fi
for c in "${CONNS[@]}"; do
	measure_pair "$c"
done
measure_paced "(a) bare302" bare "$BARE_ADDR" "$BARE_PID" "${CONNS[-1]}"
measure_paced "(b) shortline-redirect" redirect "$REDIRECT_ADDR" "$REDIRECT_PID" "${CONNS[-1]}"
finish_rows bare "$(check_redirect "$BARE_ADDR")" "$(proc_mem "$BARE_PID")"
terminate_pid "$BARE_PID"
stop_redirect redirect "$REDIRECT_ADDR" "$REDIRECT_PID"
[[ -z $COMPARE_BIN ]] || stop_redirect compare "$COMPARE_ADDR" "$COMPARE_PID"

# (c) and (d): the L1-miss paths, one run each.
if ((${#MISS_CONNS[@]} > 0)); then
	start_redirect "(c) shortline-redirect, REDIRECT_L1_CAPACITY=0" redirect-l1off \
		VALKEY_URL="$VALKEY_URL" REDIRECT_L1_CAPACITY=0
	measure "(c) shortline-redirect, REDIRECT_L1_CAPACITY=0" redirect-l1off "$ADDR" "${MISS_CONNS[@]}"
	stop_redirect redirect-l1off "$ADDR" "$SERVER_PID"
	start_redirect "(d) shortline-redirect, REDIRECT_L1_CAPACITY=0 VALKEY_URL=" redirect-pg \
		VALKEY_URL= REDIRECT_L1_CAPACITY=0
	measure "(d) shortline-redirect, REDIRECT_L1_CAPACITY=0 VALKEY_URL=" redirect-pg "$ADDR" "${MISS_CONNS[@]}"
	stop_redirect redirect-pg "$ADDR" "$SERVER_PID"
fi

clicks="$(nats_streams count 2>/dev/null)" || clicks="? (could not ask JetStream)"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# The service's own code per cached redirect, in process (examples/hotpath.rs), on the same
# links: next to a HashMap get and L1 alone (it is built from the tree, not BENCH_REDIRECT_BIN).
HOTPATH="skipped (BENCH_HOTPATH_LOOKUPS=0)"
if ((HOTPATH_LOOKUPS > 0)); then
	log "in-process hot path (examples/hotpath.rs, $HOTPATH_LOOKUPS codes per round)"
	HOTPATH="$(env DATABASE_URL="$BENCH_URL" VALKEY_URL="$VALKEY_URL" NATS_URL="$NATS_URL" \
		NATS_PREFIX="$PREFIX" RUST_LOG=warn "$HOTPATH_BIN" "$HOTPATH_LOOKUPS" 5 2>"$WORK/hotpath.log")" || {
		show_log_tail "$WORK/hotpath.log"
		HOTPATH="failed (see the log above)"
		ERRORS_SEEN=1
	}
fi

# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------
report() {
	printf '%s\n' "$HEADER"
	printf 'wrk -t%s, %s s per run after %s s warm-up, random code per request among %s active links; (a) and (b) in %s alternating round(s) per concurrency (medians; ratio: median (min–max) of the rounds); (b) after %s; service RUST_LOG=%s\n\n' \
		"$THREADS" "$DURATION" "$WARMUP" "$n_codes" "$ROUNDS" "$FILL_NOTE" "${BENCH_RUST_LOG:-warn}"
	printf '| configuration | conns | req/s | p50 | p99 | req/s vs bare302 | server CPU / request | wrk CPU / request | nats-server CPU / request | X-Cache | RSS after (VmRSS / VmHWM) |\n'
	printf '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n'
	printf '%s\n' "${ROWS[@]}"
	printf '\n'
	if ((${#COMPARISONS[@]} > 0)); then
		printf "(b) against (b') in the same rounds:\n\n"
		printf -- '- %s\n' "${COMPARISONS[@]}"
		printf '\n'
	fi
	printf 'Messages in the JetStream streams under prefix "%s" afterwards (click events; a message may carry a batch): %s. ' "$PREFIX" "$clicks"
	printf 'X-Cache: the header of one spot-check request after the runs. Runs took %s s; ' "$(($(date +%s) - started_at))"
	printf 'load average (1/5/15 min) before: %s, after: %s (everything else on the machine competes for the same cores).\n' \
		"$load_before" "$load_after"
	printf '\nIn process, after the runs (examples/hotpath.rs): %s\n' "$HOTPATH"
	if [[ $ERRORS_SEEN == 1 ]]; then
		printf '\nWARNING: some runs had error responses or socket errors; see the log above.\n'
	fi
}
printf '\n'
report
if [[ -n $OUT ]]; then
	report >"$OUT"
	log "table written to $OUT"
fi
