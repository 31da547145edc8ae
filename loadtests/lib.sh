# shellcheck shell=bash
# Helpers shared by the load-test scripts (loadtests/*.sh). Source it after scripts/lib.sh.
# A script calls bench_workdir first (its scratch folder WORK and the exit trap), then
# reuse_or_start_servers when it needs Valkey or NATS, and scratch_db for its database; at
# exit, bench_cleanup stops what the run started, by pid (PIDS, STARTED_SERVERS), and drops
# the scratch database unless KEEP=1. psql goes through PSQL (find_psql). Processes are
# stopped with scripts/lib.sh's terminate_pid.

# What the run started and made; bench_cleanup undoes it.
PIDS=()
STARTED_SERVERS=()
DB_CREATED=0
BENCH_DB=""
ADMIN_URL=""
BENCH_URL=""
KEEP="${BENCH_KEEP:-0}"

# bench_workdir NAME: WORK, a fresh /tmp/shortline-bench-NAME.XXXXXX, and the traps that run
# bench_cleanup at exit (INT and TERM exit 130 and 143 through it).
bench_workdir() {
	WORK="$(mktemp -d "/tmp/shortline-bench-$1.XXXXXX")"
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# bench_cleanup: the exit trap. Stops PIDS; unless KEEP=1, calls bench_drop_extra when the
# script defines it (what else the run left behind, e.g. its JetStream streams) and drops the
# scratch database; stops the servers reuse_or_start_servers started, last first; removes
# WORK. Exits with the script's status.
bench_cleanup() {
	local rc=$? pid i
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do terminate_pid "$pid" || true; done
	if [[ $KEEP != 1 ]]; then
		if declare -F bench_drop_extra >/dev/null; then
			bench_drop_extra >/dev/null 2>&1 || true
		fi
		if [[ $DB_CREATED == 1 ]]; then
			psql_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1 || true
		fi
	fi
	for ((i = ${#STARTED_SERVERS[@]} - 1; i >= 0; i--)); do
		bash "$ROOT/scripts/servers.sh" stop "${STARTED_SERVERS[i]}" || true
	done
	[[ -n ${WORK:-} ]] && rm -rf "$WORK"
	exit "$rc"
}

# reuse_or_start_servers NAME...: for each of postgres, valkey and nats, reuses the running
# local server, or starts it with scripts/servers.sh and, once it is up, records it in
# STARTED_SERVERS (stopped again at exit). A start that fails (say, the port is taken by a
# server of another state directory) is not recorded: the exit must not stop what this run
# did not start.
reuse_or_start_servers() {
	local s
	for s in "$@"; do
		if bash "$ROOT/scripts/servers.sh" status "$s" >/dev/null 2>&1; then
			log "$s: reusing the running server"
		else
			log "$s: not running; starting it (stopped again at exit)"
			bash "$ROOT/scripts/servers.sh" start "$s" || die "could not start $s"
			STARTED_SERVERS+=("$s")
		fi
	done
}

# scratch_db NAME API_BIN: the scratch database NAME on DATABASE_URL's PostgreSQL, dropped
# and re-created (again on a second call), with the migrations applied by `API_BIN migrate`;
# dropped at exit unless KEEP=1. Sets BENCH_DB, BENCH_URL and ADMIN_URL (the server's
# `postgres` database).
scratch_db() {
	BENCH_DB="$1"
	ADMIN_URL="$(url_with_db "$DATABASE_URL" postgres)"
	BENCH_URL="$(url_with_db "$DATABASE_URL" "$BENCH_DB")"
	psql_admin "SELECT 1" >/dev/null || die "PostgreSQL at $(redact_url "$ADMIN_URL") is not reachable (start it first)"
	log "database: $(redact_url "$BENCH_URL") (dropped and re-created)"
	psql_admin "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null
	DB_CREATED=1
	psql_admin "CREATE DATABASE $BENCH_DB" >/dev/null
	DATABASE_URL="$BENCH_URL" RUST_LOG=warn "$2" migrate >"$WORK/migrate.log" 2>&1 || {
		cat "$WORK/migrate.log" >&2
		die "shortline-api migrate failed"
	}
}

# psql_admin SQL: one statement on the server's `postgres` database.
psql_admin() { psql_at "$ADMIN_URL" -c "$1"; }
# bench_sql SQL: one statement on the scratch database; psql_bench ARGS...: psql on it.
bench_sql() { psql_at "$BENCH_URL" -c "$1"; }
psql_bench() { psql_at "$BENCH_URL" "$@"; }

# start_bench_api LABEL API_BIN [ENV...]: `API_BIN serve` on a free loopback port over the
# scratch database, alone: NATS pointed at a closed port (no outbox traffic), no Valkey,
# API_AUTH=off, RUST_LOG=warn; ENV adds to or overrides that. Waits for /health; sets
# API_ADDR and API_PID.
start_bench_api() {
	local label="$1" bin="$2"
	shift 2
	API_ADDR="127.0.0.1:$(free_port)"
	start_server "$label" DATABASE_URL="$BENCH_URL" API_LISTEN="$API_ADDR" NATS_URL="nats://127.0.0.1:1" \
		NATS_PREFIX=bench API_AUTH=off VALKEY_URL= RUST_LOG=warn "$@" -- "$bin" serve
	API_PID=$SERVER_PID
	wait_health "$API_ADDR" "$API_PID" "$label"
	log "$label on $API_ADDR (pid $API_PID)"
}

# require_commands CMD...: dies naming the first one missing.
require_commands() {
	local cmd
	for cmd in "$@"; do
		command -v "$cmd" >/dev/null || die "$cmd is required"
	done
}

# ensure_wrk: installs wrk with apt-get when missing and running as root; dies otherwise.
ensure_wrk() {
	command -v wrk >/dev/null && return 0
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "wrk not found; installing it with apt-get"
		apt-get install -y -q wrk >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } ||
			die "could not install wrk with apt-get"
	fi
	command -v wrk >/dev/null || die "wrk is required (Debian/Ubuntu: apt-get install wrk)"
}

# find_psql: sources scripts/tools.sh for the tools' paths (PG_BIN and the rest; it installs
# nothing here) and sets PSQL to the tools' psql, else the system's.
find_psql() {
	# shellcheck disable=SC2034  # read by tools.sh
	SHORTLINE_TOOLS_NO_INSTALL=1
	# shellcheck source=scripts/tools.sh
	source "$ROOT/scripts/tools.sh"
	PSQL="${PG_BIN:+$PG_BIN/psql}"
	[[ -n $PSQL && -x $PSQL ]] || PSQL="$(command -v psql || true)"
	[[ -n $PSQL ]] || die "psql not found (run 'make tools', or install a PostgreSQL client)"
}

# cargo_target: the absolute cargo target directory (CARGO_TARGET_DIR or <repo>/target).
cargo_target() {
	local target="${CARGO_TARGET_DIR:-$ROOT/target}"
	[[ $target == /* ]] || target="$ROOT/$target"
	printf '%s\n' "$target"
}

# url_with_db URL DB: the PostgreSQL URL with its database replaced by DB.
url_with_db() {
	local url="$1" query="" rest
	if [[ $url == *\?* ]]; then
		query="?${url#*\?}"
		url="${url%%\?*}"
	fi
	rest="${url#*://}"
	[[ $rest == */* ]] && url="${url%/*}"
	printf '%s/%s%s\n' "$url" "$2" "$query"
}

# psql_at URL ARGS...: quiet, unaligned, tuples-only psql that stops on the first error.
psql_at() {
	local url="$1"
	shift
	PGOPTIONS='-c client_min_messages=warning' "$PSQL" -X -q -A -t -v ON_ERROR_STOP=1 "$url" "$@"
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server LABEL ENV... -- CMD...: starts CMD in the background with ENV and without any
# inherited service setting (so each run uses exactly the settings it names); logs to
# $WORK/LABEL.log; sets SERVER_PID and appends it to PIDS.
start_server() {
	local label="$1" envs=() name
	shift
	for name in $(compgen -e); do
		[[ $name =~ ^(API_|ANALYTICS_|REDIRECT_|VALKEY_|CLICK_|NATS_|TRUSTED_PROXIES$|DATABASE_URL$|RUST_LOG$|LOG_FORMAT$) ]] &&
			envs+=(-u "$name")
	done
	while [[ $1 != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	env "${envs[@]}" "$@" >"$WORK/$label.log" 2>&1 </dev/null &
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
}

# wait_health ADDR PID LABEL: until GET /health answers (any status below 400: the bare
# server's 302 counts).
wait_health() {
	local addr="$1" pid="$2" label="$3" i
	for ((i = 0; i < 300; i++)); do
		curl -fsS --max-time 1 -o /dev/null "http://$addr/health" 2>/dev/null && return 0
		if ! pid_alive "$pid"; then
			show_log_tail "$WORK/$label.log"
			die "$label exited before answering on http://$addr/health"
		fi
		sleep 0.1
	done
	show_log_tail "$WORK/$label.log"
	die "$label: no answer on http://$addr/health after 30 s"
}
