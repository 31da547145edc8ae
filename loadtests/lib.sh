# shellcheck shell=bash
# Helpers shared by the load-test scripts (loadtests/*.sh). Source it after scripts/lib.sh;
# the functions use the caller's WORK (temp dir) and PIDS (started processes) and, for
# psql, PSQL. Processes are stopped with scripts/lib.sh's terminate_pid.

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

# find_psql: sets PSQL to the tools' psql (scripts/tools.sh sourced first: PG_BIN), else the
# system's.
find_psql() {
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
