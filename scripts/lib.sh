# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source it
# Common settings and helpers for the Shortline dev scripts. Source it; don't run it.
#
# Everything here is loopback-only. Ports are the project's fixed local interface (see
# .env.example); the SHORTLINE_* overrides exist for a second clone on the same machine.
#
# DATABASE_URL / VALKEY_URL / NATS_URL: when one is set and does not point at the local port
# below, that backing server is "external": the scripts use it and never start, stop or
# touch a local one in its place.

SHORTLINE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
SCRIPTS="$SHORTLINE_ROOT/scripts"
STATE_DIR="${SHORTLINE_STATE_DIR:-$SHORTLINE_ROOT/.local}"
LOG_DIR="$STATE_DIR/logs"
# The local admin API key `make up` creates (scripts/api-key.sh).
API_KEY_FILE="$STATE_DIR/api-key"
RUN_DIR="$STATE_DIR/run"

PG_PORT="${SHORTLINE_PG_PORT:-55432}"
VALKEY_PORT="${SHORTLINE_VALKEY_PORT:-56379}"
NATS_PORT="${SHORTLINE_NATS_PORT:-54222}"
NATS_MONITOR_PORT="${SHORTLINE_NATS_MONITOR_PORT:-58222}"
# NATS_CLUSTER=3: a local three-node NATS cluster (scripts/servers.sh) instead of one server.
# Node i (1..N) listens for clients on NATS_PORT+i-1, for monitoring on NATS_MONITOR_PORT+i-1
# and for its cluster routes on NATS_CLUSTER_PORT+i-1; clients get every node's URL, and the
# services keep NATS_STREAM_REPLICAS (default: the cluster size) copies of each stream.
NATS_CLUSTER="${NATS_CLUSTER:-1}"
[[ $NATS_CLUSTER =~ ^[1-9]$ ]] || { echo "NATS_CLUSTER must be 1..9 (got '$NATS_CLUSTER')" >&2; exit 2; }
NATS_CLUSTER_PORT="${SHORTLINE_NATS_CLUSTER_PORT:-56222}"
EDGE_LISTEN="${EDGE_LISTEN:-127.0.0.1:8000}"
EDGE_PING_LISTEN="${EDGE_PING_LISTEN:-127.0.0.1:58080}"

LOCAL_DATABASE_URL="postgres://shortline@127.0.0.1:$PG_PORT/shortline"
LOCAL_VALKEY_URL="redis://127.0.0.1:$VALKEY_PORT"
LOCAL_NATS_URL="nats://127.0.0.1:$NATS_PORT"
for ((_i = 2; _i <= NATS_CLUSTER; _i++)); do LOCAL_NATS_URL+=",nats://127.0.0.1:$((NATS_PORT + _i - 1))"; done
unset _i
if ((NATS_CLUSTER > 1)); then export NATS_STREAM_REPLICAS="${NATS_STREAM_REPLICAS:-$NATS_CLUSTER}"; fi

# Credentials of the local NATS and Valkey (scripts/servers.sh generates them on first start;
# dir 0700, one 0600 file per password). NATS: users admin, api, redirect, analytics
# (config/nats/auth.conf); Valkey: users admin and shortline (config/valkey/acl.conf).
SECRETS_DIR="$STATE_DIR/secrets"
# nats-route: the cluster routes between the nodes of NATS_CLUSTER>1.
SECRET_NAMES=(nats-admin nats-api nats-redirect nats-analytics nats-route valkey-admin valkey-shortline)

# The OS user that runs postgres when the scripts run as root (postgres refuses root).
PG_SYSTEM_USER="shortline"

log() { printf '[%s] %s\n' "${SHORTLINE_LOG_TAG:-shortline}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# url_host_port URL -> "host port" (port empty when the URL has none).
url_host_port() {
	local rest="${1#*://}"
	rest="${rest%%[/?#]*}"
	rest="${rest##*@}"
	local host port=""
	if [[ $rest == \[* ]]; then
		host="${rest%%]*}"
		host="${host#[}"
		rest="${rest#*]}"
		[[ $rest == :* ]] && port="${rest#:}"
	elif [[ $rest == *:* ]]; then
		host="${rest%:*}"
		port="${rest##*:}"
	else
		host="$rest"
	fi
	printf '%s %s\n' "$host" "$port"
}

# redact_url URL: the URL with any password replaced, for logs (each entry of a list).
redact_url() {
	if [[ $1 == *,* ]]; then
		local entry out=() entries
		IFS=, read -ra entries <<<"$1"
		for entry in "${entries[@]}"; do out+=("$(redact_url "$entry")"); done
		(IFS=,; printf '%s\n' "${out[*]}")
		return
	fi
	local url="$1" scheme rest auth
	[[ $url == *://* ]] || {
		printf '%s\n' "$url"
		return
	}
	scheme="${url%%://*}"
	rest="${url#*://}"
	auth="${rest%%[/?#]*}"
	if [[ $auth == *:*@* ]]; then
		rest="${auth%%:*}:***@${auth##*@}${rest#"$auth"}"
	fi
	printf '%s://%s\n' "$scheme" "$rest"
}

# local_secret NAME: prints the password in $SECRETS_DIR/NAME (fails when there is none).
local_secret() {
	local value
	[[ -f $SECRETS_DIR/$1 ]] || return 1
	read -r value <"$SECRETS_DIR/$1" || [[ -n $value ]] || return 1
	printf '%s\n' "$value"
}

# ensure_local_secrets: generates every missing password (48 hex characters from
# /dev/urandom: URL-safe, so they go into URLs as they are). Existing ones are kept.
ensure_local_secrets() {
	local name value
	mkdir -p "$STATE_DIR"
	(
		umask 077
		mkdir -p "$SECRETS_DIR"
	)
	chmod 700 "$SECRETS_DIR"
	for name in "${SECRET_NAMES[@]}"; do
		[[ -s $SECRETS_DIR/$name ]] && continue
		value="$(head -c 24 /dev/urandom | od -An -v -tx1 | tr -d ' \n')"
		[[ ${#value} == 48 ]] || die "could not generate a password from /dev/urandom"
		(
			umask 077
			printf '%s\n' "$value" >"$SECRETS_DIR/$name.tmp"
		)
		mv -f "$SECRETS_DIR/$name.tmp" "$SECRETS_DIR/$name"
		log "generated the local $name password in $SECRETS_DIR/$name"
	done
}

# url_has_userinfo URL: the URL names a user (user@ or user:password@).
url_has_userinfo() {
	local rest="${1#*://}"
	rest="${rest%%[/?#]*}"
	[[ $rest == *@* ]]
}

# url_with_user URL USER PASSWORD: URL with its user and password replaced (PASSWORD must be
# URL-safe, as the generated ones are); each entry of a comma-separated list (NATS_URL of a
# cluster).
url_with_user() {
	if [[ $1 == *,* ]]; then
		local entry out=() entries
		IFS=, read -ra entries <<<"$1"
		for entry in "${entries[@]}"; do out+=("$(url_with_user "$entry" "$2" "$3")"); done
		(IFS=,; printf '%s\n' "${out[*]}")
		return
	fi
	local url="$1" scheme rest auth
	[[ $url == *://* ]] || url="nats://$url"
	scheme="${url%%://*}"
	rest="${url#*://}"
	auth="${rest%%[/?#]*}"
	rest="${rest#"$auth"}"
	printf '%s://%s:%s@%s%s\n' "$scheme" "$2" "$3" "${auth##*@}" "$rest"
}

# url_logs_in_as_local_admin URL SECRET: the URL names no user, or the local admin user with
# the password in $SECRETS_DIR/SECRET (what use_local_credentials below makes of it).
url_logs_in_as_local_admin() {
	url_has_userinfo "$1" || return 0
	local password
	password="$(local_secret "$2")" || return 1
	[[ $1 == "$(url_with_user "$1" admin "$password")" ]]
}

# url_is_local URL PORT: true when URL points at this machine's loopback on PORT.
url_is_local() {
	local host port
	read -r host port < <(url_host_port "$1")
	case "$host" in
	127.0.0.1 | localhost) ;;
	*) return 1 ;;
	esac
	[[ $port == "$2" ]]
}

# Exports DATABASE_URL/VALKEY_URL/NATS_URL (local defaults when unset) and sets
# EXTERNAL_POSTGRES/EXTERNAL_VALKEY/EXTERNAL_NATS to 1 for servers given from outside.
EXTERNAL_POSTGRES=0 EXTERNAL_VALKEY=0 EXTERNAL_NATS=0
if [[ -n ${DATABASE_URL:-} ]] && ! url_is_local "$DATABASE_URL" "$PG_PORT"; then EXTERNAL_POSTGRES=1; fi
if [[ -n ${VALKEY_URL:-} ]] && ! url_is_local "$VALKEY_URL" "$VALKEY_PORT"; then EXTERNAL_VALKEY=1; fi
# (A cluster's NATS_URL lists every node: its first entry decides.)
if [[ -n ${NATS_URL:-} ]] && ! url_is_local "${NATS_URL%%,*}" "$NATS_PORT"; then EXTERNAL_NATS=1; fi
export DATABASE_URL="${DATABASE_URL:-$LOCAL_DATABASE_URL}"
export VALKEY_URL="${VALKEY_URL:-$LOCAL_VALKEY_URL}"
export NATS_URL="${NATS_URL:-$LOCAL_NATS_URL}"

# use_local_credentials: a local VALKEY_URL / NATS_URL without a user gets the admin user of
# the local server (the test suite, operator shells and tools use these; scripts/services.sh
# gives each service its own user instead). External URLs, and URLs that already name a
# user, are left as they are. Call it again once scripts/servers.sh has generated the
# passwords.
use_local_credentials() {
	local password
	if [[ $EXTERNAL_VALKEY == 0 ]] && ! url_has_userinfo "$VALKEY_URL" &&
		password="$(local_secret valkey-admin)"; then
		VALKEY_URL="$(url_with_user "$VALKEY_URL" admin "$password")"
	fi
	if [[ $EXTERNAL_NATS == 0 ]] && ! url_has_userinfo "$NATS_URL" &&
		password="$(local_secret nats-admin)"; then
		NATS_URL="$(url_with_user "$NATS_URL" admin "$password")"
	fi
	export VALKEY_URL NATS_URL
}
use_local_credentials
export API_LISTEN="${API_LISTEN:-127.0.0.1:18080}"
export REDIRECT_LISTEN="${REDIRECT_LISTEN:-127.0.0.1:18081}"
# Where a stopping redirect service writes the clicks it could not publish (NATS down); the
# next start publishes and deletes them.
export CLICK_SPILL_DIR="${CLICK_SPILL_DIR:-$STATE_DIR/spill}"
export ANALYTICS_LISTEN="${ANALYTICS_LISTEN:-127.0.0.1:18082}"
export LOG_FORMAT="${LOG_FORMAT:-json}"
export RUST_LOG="${RUST_LOG:-info}"

# is_external NAME: NAME is postgres|valkey|nats.
is_external() {
	case "$1" in
	postgres) [[ $EXTERNAL_POSTGRES == 1 ]] ;;
	valkey) [[ $EXTERNAL_VALKEY == 1 ]] ;;
	nats) [[ $EXTERNAL_NATS == 1 ]] ;;
	*) return 1 ;;
	esac
}

ensure_state_dirs() { mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"; }

# port_open PORT [HOST]: something accepts TCP connections there.
port_open() {
	# shellcheck disable=SC2016  # $1/$2 expand in the inner shell
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${2:-127.0.0.1}" "$1" 2>/dev/null
}

# pid_alive PID: the process exists and is not a zombie waiting to be reaped.
pid_alive() {
	kill -0 "$1" 2>/dev/null || return 1
	local stat
	stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
	stat="${stat##*) }"
	[[ ${stat:0:1} != Z ]]
}

# read_pid FILE: prints the pid stored in FILE when that process is alive.
read_pid() {
	local pid
	[[ -f $1 ]] || return 1
	read -r pid <"$1" || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	pid_alive "$pid" || return 1
	printf '%s\n' "$pid"
}

# pid_is PID NAME: the process PID runs a program called NAME (guards against pid reuse).
pid_is() {
	local exe
	exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || exe=""
	[[ ${exe##*/} == "$2" || ${exe##*/} == "$2 (deleted)" ]] && return 0
	# Fall back to argv[0] (e.g. when /proc/PID/exe is unreadable).
	local arg0
	arg0="$(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | head -n 1)" || return 1
	[[ ${arg0##*/} == "$2" ]]
}

# How long a stop waits after SIGTERM before SIGKILL. It must exceed what a service's
# graceful shutdown may take: the redirect service finishes in-flight requests, tries to
# publish its click buffer for CLICK_FLUSH_TIMEOUT_SECS (5 s), then spills the rest to a file.
SHORTLINE_STOP_TIMEOUT="${SHORTLINE_STOP_TIMEOUT:-20}"

# stop_pid NAME PIDFILE PROGRAM: SIGTERM, wait up to $SHORTLINE_STOP_TIMEOUT s (20), then
# SIGKILL; removes PIDFILE.
stop_pid() {
	local name="$1" file="$2" prog="$3" pid
	if ! pid="$(read_pid "$file")"; then
		rm -f "$file"
		log "$name: not running"
		return 0
	fi
	if ! pid_is "$pid" "$prog"; then
		log "$name: pid $pid from $file is not $prog any more; leaving it alone"
		rm -f "$file"
		return 0
	fi
	log "$name: stopping pid $pid"
	terminate_pid "$pid" "$name"
	rm -f "$file"
}

# terminate_pid PID [NAME]: SIGTERM, wait up to $SHORTLINE_STOP_TIMEOUT s (20), then SIGKILL
# (logged when NAME is given); reaps PID when it is a child of this shell.
terminate_pid() {
	local pid="$1" name="${2:-}" i
	pid_alive "$pid" || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < SHORTLINE_STOP_TIMEOUT * 10; i++)); do
		pid_alive "$pid" || break
		sleep 0.1
	done
	if pid_alive "$pid"; then
		[[ -n $name ]] && log "$name: still alive after $SHORTLINE_STOP_TIMEOUT s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	wait "$pid" 2>/dev/null || true
}

# spawn LOGFILE PIDFILE CMD...: start CMD in its own session (so a Ctrl-C in the terminal
# or the end of `make` does not reach it), stdout+stderr appended to LOGFILE.
spawn() {
	local logfile="$1" pidfile="$2"
	shift 2
	# A background job of a non-interactive shell is not a process-group leader, so setsid
	# execs CMD in place and $! is CMD's own pid.
	setsid "$@" >>"$logfile" 2>&1 </dev/null &
	printf '%s\n' "$!" >"$pidfile"
}

# wait_for SECONDS PID DESCRIPTION CMD...: poll CMD until it succeeds; fail early when PID dies
# (PID may be empty for "no process to watch").
wait_for() {
	local secs="$1" pid="$2" what="$3" i
	shift 3
	for ((i = 0; i < secs * 5; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		if [[ -n $pid ]] && ! pid_alive "$pid"; then
			log "$what: process $pid exited"
			return 1
		fi
		sleep 0.2
	done
	log "$what: not ready after ${secs}s"
	return 1
}

# show_log_tail FILE: the last lines of a log, for a failure message.
show_log_tail() {
	[[ -f $1 ]] || return 0
	log "last lines of $1:"
	tail -n 30 "$1" >&2 || true
}

# run_key BASE NAME: an admin key for one run of a suite (make chaos, make fuzz), created with
# SHORTLINE_API_KEY through BASE (http://host:port): named NAME, expiring within the hour, with
# a rate limit no run reaches. Sets RUN_KEY_ID and RUN_KEY; revoke_run_key revokes it.
RUN_KEY_ID=""
RUN_KEY=""
run_key() {
	local base="$1" name="$2" expires code body
	body="$(mktemp)"
	expires="$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%S)"
	code="$(curl -sS -o "$body" -w '%{http_code}' --max-time 10 -X POST \
		-H "Authorization: Bearer $SHORTLINE_API_KEY" -H 'Content-Type: application/json' \
		--data "{\"name\": \"$name\", \"user_id\": null, \"rate_limit_per_minute\": 1000000, \"expires_at\": \"$expires\"}" \
		"$base/keys")" || code=000
	if [[ $code != 201 ]]; then
		log "POST /keys answered $code: $(cat "$body" 2>/dev/null)"
		rm -f "$body"
		die "could not create a key for $name"
	fi
	read -r RUN_KEY_ID RUN_KEY < <(python3 -c 'import json, sys; k = json.load(open(sys.argv[1])); print(k["id"], k["key"])' "$body")
	rm -f "$body"
}

# revoke_run_key BASE: revokes run_key's key (best effort: it expires within the hour anyway).
revoke_run_key() {
	[[ -n $RUN_KEY_ID ]] || return 0
	curl -s -o /dev/null --max-time 10 -X DELETE -H "Authorization: Bearer $SHORTLINE_API_KEY" \
		"$1/keys/$RUN_KEY_ID" || log "could not revoke the key $RUN_KEY_ID (it expires within the hour)"
}
