#!/usr/bin/env bash
# The Shortline services and the local edge.
#
#   scripts/services.sh start|stop|status [api|redirect|analytics|edge|all|<replica>]   (default: all)
#   scripts/services.sh urls     print where everything listens
#
# REDIRECT_REPLICAS / ANALYTICS_REPLICAS (default 1) run that many replicas of the service:
# replica 1 is `redirect` (REDIRECT_LISTEN), replica i > 1 is `redirect-<i>` on REDIRECT_LISTEN's
# port + 10*(i-1) (127.0.0.1:18091, ...), each with its own pid and log file; the same for
# analytics. `redirect` / `analytics` as a target means every replica (stop and status: every
# replica with a pid file, whatever the variables say now); `redirect-2` etc. one replica (what
# make chaos kills and restarts). The edge balances over every redirect replica, health-checks
# each (GET /health every second, and 3 failed requests in a row take it out until the next
# check passes) and retries a redirect that got no answer (redirects are GET: idempotent); see
# config/traefik/dynamic.yml.
# Analytics replicas share one durable JetStream consumer (ANALYTICS_CONSUMER): each batch
# goes to one of them.
# Runs the release binaries from ${CARGO_TARGET_DIR:-target}/release/ in the background with
# the dev environment (scripts/lib.sh), logs in .local/logs/<name>.log, pid files in
# .local/run/<name>.pid, and waits for GET /health on each. edge = Traefik on EDGE_LISTEN
# (127.0.0.1:8000) with config/traefik/ rendered into .local/traefik/.
# stop: SIGTERM by pid, up to SHORTLINE_STOP_TIMEOUT (20 s: longer than the redirect
# service's click flush timeout plus its spill), then SIGKILL.
#
# Each service logs in to the local NATS as its own user (api, redirect, analytics: what
# config/nats/auth.conf lets that user publish and subscribe) and to the local Valkey as the
# user `shortline` (api and redirect; analytics does not use Valkey), with the passwords in
# .local/secrets/. NATS_URL / VALKEY_URL given from outside (an external server, or a URL that
# names its own user) are passed on unchanged.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=services

usage() {
	echo "usage: $0 start|stop|status [api|redirect|analytics|edge|all|redirect-<i>|analytics-<i>] | urls" >&2
	exit 2
}

target_dir="${CARGO_TARGET_DIR:-target}"
[[ $target_dir == /* ]] || target_dir="$SHORTLINE_ROOT/$target_dir"
BIN_DIR="$target_dir/release"

# Listen address -> an address to connect to (wildcards become loopback).
connect_addr() {
	local addr="$1"
	case "$addr" in
	0.0.0.0:*) addr="127.0.0.1:${addr#0.0.0.0:}" ;;
	\[::\]:*) addr="127.0.0.1:${addr#\[::\]:}" ;;
	esac
	printf '%s\n' "$addr"
}

REDIRECT_REPLICAS="${REDIRECT_REPLICAS:-1}"
ANALYTICS_REPLICAS="${ANALYTICS_REPLICAS:-1}"
[[ $REDIRECT_REPLICAS =~ ^[1-9]$ ]] || die "REDIRECT_REPLICAS must be 1..9"
[[ $ANALYTICS_REPLICAS =~ ^[1-9]$ ]] || die "ANALYTICS_REPLICAS must be 1..9"

# service_of INSTANCE: redirect-2 -> redirect.
service_of() { printf '%s\n' "${1%-[0-9]}"; }
# replica_index INSTANCE: redirect -> 1, redirect-2 -> 2.
replica_index() { if [[ $1 == *-[0-9] ]]; then printf '%s\n' "${1##*-}"; else echo 1; fi; }

# instances SERVICE: the replicas this configuration runs (api and edge: one).
instances() {
	local n=1 i
	case "$1" in
	redirect) n=$REDIRECT_REPLICAS ;;
	analytics) n=$ANALYTICS_REPLICAS ;;
	esac
	echo "$1"
	for ((i = 2; i <= n; i++)); do echo "$1-$i"; done
}

# running_instances SERVICE: every replica with a pid file (started with any replica count).
running_instances() {
	local f
	for f in "$RUN_DIR/$1.pid" "$RUN_DIR/$1"-[0-9].pid; do
		[[ -f $f ]] && basename "$f" .pid
	done
	return 0
}

# listen_of INSTANCE: the service's *_LISTEN, its port + 10 per replica after the first.
listen_of() {
	local base i
	case "$(service_of "$1")" in
	api) base="$API_LISTEN" ;;
	redirect) base="$REDIRECT_LISTEN" ;;
	analytics) base="$ANALYTICS_LISTEN" ;;
	esac
	i="$(replica_index "$1")"
	printf '%s:%s\n' "${base%:*}" "$((${base##*:} + 10 * (i - 1)))"
}

health_ok() {
	local body
	body="$(curl -fsS --max-time 2 "http://$1/health")" || return 1
	[[ $body == *'"ok"'* ]]
}

start_service() {
	local name="$1" service pidfile="$RUN_DIR/$1.pid" logfile="$LOG_DIR/$1.log" bin listen
	local addr pid
	service="$(service_of "$name")"
	bin="$BIN_DIR/shortline-$service"
	listen="$(listen_of "$name")"
	addr="$(connect_addr "$listen")"
	if pid="$(read_pid "$pidfile")" && pid_is "$pid" "shortline-$service"; then
		if wait_for 30 "$pid" "$name" health_ok "$addr"; then
			log "$name: already running (pid $pid)"
			return 0
		fi
		die "$name: pid $pid is alive but http://$addr/health does not answer"
	fi
	rm -f "$pidfile"
	[[ -x $bin ]] || die "$name: $bin not found; run 'make build' first"
	port_open "${addr##*:}" "${addr%:*}" && die "$name: $addr is taken by another process"
	log "$name: starting $bin on $addr"
	printf '\n==== %s start %s ====\n' "$name" "$(date -u +%FT%TZ)" >>"$logfile"
	(
		service_credentials "$service"
		case "$service" in
		redirect) export REDIRECT_LISTEN="$listen" ;;
		analytics) export ANALYTICS_LISTEN="$listen" ;;
		esac
		if [[ $name == api ]]; then
			spawn "$logfile" "$pidfile" "$bin" serve
		else
			spawn "$logfile" "$pidfile" "$bin"
		fi
	)
	pid="$(cat "$pidfile")"
	if ! wait_for 60 "$pid" "$name" health_ok "$addr"; then
		show_log_tail "$logfile"
		stop_pid "$name" "$pidfile" "shortline-$service"
		die "$name: did not become healthy"
	fi
	log "$name: healthy at http://$addr (pid $pid)"
}

# service_credentials NAME: exports the NATS_URL / VALKEY_URL service NAME runs with: its own
# NATS user, and the Valkey user `shortline`, on the local servers (in a subshell: the
# exports must not leak into the next service's).
service_credentials() {
	local name="$1" password
	if [[ $EXTERNAL_NATS == 0 ]] && url_logs_in_as_local_admin "$NATS_URL" nats-admin; then
		password="$(local_secret "nats-$name")" || die "$name: no NATS password in $SECRETS_DIR (run scripts/servers.sh start)"
		NATS_URL="$(url_with_user "$NATS_URL" "$name" "$password")"
	fi
	export NATS_URL
	if [[ $name == analytics ]]; then
		unset VALKEY_URL
	elif [[ $EXTERNAL_VALKEY == 0 ]] && url_logs_in_as_local_admin "$VALKEY_URL" valkey-admin; then
		password="$(local_secret valkey-shortline)" || die "$name: no Valkey password in $SECRETS_DIR (run scripts/servers.sh start)"
		export VALKEY_URL="$(url_with_user "$VALKEY_URL" shortline "$password")"
	fi
}

# render_template SRC DEST NAME=VALUE...: replace each @@NAME@@ in SRC. A VALUE of several
# lines repeats each line of SRC that holds @@NAME@@ once per line of VALUE (a list of
# servers).
render_template() {
	local src="$1" dest="$2" text kv key value line out word
	shift 2
	text="$(<"$src")"
	for kv in "$@"; do
		key="@@${kv%%=*}@@"
		value="${kv#*=}"
		if [[ $value == *$'\n'* ]]; then
			out=""
			while IFS= read -r line; do
				if [[ $line == *"$key"* ]]; then
					while IFS= read -r word; do out+="${line//"$key"/"$word"}"$'\n'; done <<<"$value"
				else
					out+="$line"$'\n'
				fi
			done <<<"$text"
			text="${out%$'\n'}"
		else
			text="${text//"$key"/"$value"}"
		fi
	done
	if [[ $text == *@@*@@* ]]; then
		die "edge: unreplaced placeholder in $src: $(grep -o '@@[A-Z_]*@@' <<<"$text" | sort -u | tr '\n' ' ')"
	fi
	printf '%s\n' "$text" >"$dest.tmp"
	mv -f "$dest.tmp" "$dest"
}

edge_ping() { curl -fsS --max-time 2 "http://$EDGE_PING_LISTEN/ping" >/dev/null; }

# Traefik answers /ping before the file provider's routers are loaded; until then every
# request gets its own 404. Any other answer for /health (200, or 502 while the api is down)
# means the routes are in place.
edge_routed() {
	local code
	code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$EDGE_LISTEN/health")" || true
	[[ $code != 404 && $code != 000 ]]
}

start_edge() {
	local pidfile="$RUN_DIR/edge.pid" logfile="$LOG_DIR/traefik.log" dir="$STATE_DIR/traefik" pid
	if pid="$(read_pid "$pidfile")" && pid_is "$pid" traefik; then
		if wait_for 10 "$pid" edge edge_ping; then
			log "edge: already running (pid $pid)"
			return 0
		fi
		die "edge: pid $pid is alive but does not answer on $EDGE_PING_LISTEN"
	fi
	rm -f "$pidfile"
	SHORTLINE_TOOLS_NO_INSTALL=0
	# shellcheck source=scripts/tools.sh
	source "$SCRIPTS/tools.sh"
	port_open "${EDGE_LISTEN##*:}" "${EDGE_LISTEN%:*}" && die "edge: $EDGE_LISTEN is taken by another process"
	port_open "${EDGE_PING_LISTEN##*:}" "${EDGE_PING_LISTEN%:*}" && die "edge: $EDGE_PING_LISTEN is taken by another process"
	mkdir -p "$dir"
	local upstreams="" r
	while read -r r; do upstreams+="$(connect_addr "$(listen_of "$r")")"$'\n'; done < <(instances redirect)
	render_template "$SHORTLINE_ROOT/config/traefik/dynamic.yml" "$dir/dynamic.yml" \
		"API_UPSTREAM=$(connect_addr "$API_LISTEN")" \
		"REDIRECT_UPSTREAM=${upstreams%$'\n'}"
	render_template "$SHORTLINE_ROOT/config/traefik/traefik.yml" "$dir/traefik.yml" \
		"EDGE_LISTEN=$EDGE_LISTEN" "EDGE_PING_LISTEN=$EDGE_PING_LISTEN" \
		"DYNAMIC_FILE=$dir/dynamic.yml" "ACCESS_LOG=$LOG_DIR/traefik-access.log"
	log "edge: starting traefik on $EDGE_LISTEN (ping $EDGE_PING_LISTEN)"
	spawn "$logfile" "$pidfile" "$TRAEFIK" "--configFile=$dir/traefik.yml"
	pid="$(cat "$pidfile")"
	if ! wait_for 30 "$pid" edge edge_ping || ! wait_for 30 "$pid" edge edge_routed; then
		show_log_tail "$logfile"
		stop_pid edge "$pidfile" traefik
		die "edge: traefik did not come up with its routes"
	fi
	log "edge: ready at http://$EDGE_LISTEN (pid $pid)"
}

status_one() {
	local name="$1" pid prog probe
	prog="shortline-$(service_of "$1")"
	[[ $name == edge ]] && prog=traefik
	if pid="$(read_pid "$RUN_DIR/$name.pid")" && pid_is "$pid" "$prog"; then
		if [[ $name == edge ]]; then
			edge_ping && probe="http://$EDGE_LISTEN" || probe="not answering"
		else
			probe="$(connect_addr "$(listen_of "$name")")"
			health_ok "$probe" && probe="http://$probe" || probe="not healthy"
		fi
		echo "$name: running pid $pid, $probe"
	else
		echo "$name: stopped"
		return 1
	fi
}

print_urls() {
	cat <<EOF
Shortline local stack:
  edge (use this)   http://$EDGE_LISTEN          e.g. curl 'http://$EDGE_LISTEN/users?per_page=5'
  API docs          http://$EDGE_LISTEN/apidocs   (OpenAPI: /openapi.json)
  api               http://$(connect_addr "$API_LISTEN")
$(for r in $(instances redirect); do printf '  %-17s http://%s\n' "$r" "$(connect_addr "$(listen_of "$r")")"; done)
$(for r in $(instances analytics); do printf '  %-17s http://%s\n' "$r" "$(connect_addr "$(listen_of "$r")")"; done)
  edge health       http://$EDGE_PING_LISTEN/ping
  PostgreSQL        $(redact_url "$DATABASE_URL")
  Valkey            $(redact_url "$VALKEY_URL")
  NATS              $(redact_url "$NATS_URL")   (monitoring http://127.0.0.1:$NATS_MONITOR_PORT)
  logs              $LOG_DIR/
  stop with         make down
EOF
}

ALL=(api redirect analytics edge)

action="${1:-}"
shift || true
if [[ $action == urls ]]; then
	print_urls
	exit 0
fi
case "${1:-all}" in
all) targets=("${ALL[@]}") ;;
api | redirect | analytics | edge) targets=("$1") ;;
redirect-[2-9] | analytics-[2-9]) targets=("$1") ;;
*) usage ;;
esac

# expand start|stop|status TARGET: the instances a target means.
expand() {
	local t="$2"
	case "$t" in
	redirect | analytics)
		if [[ $1 == start ]]; then
			instances "$t"
		else
			# Every replica with a pid file, and those this configuration expects.
			{ running_instances "$t"; [[ $1 == status ]] && instances "$t"; } | sort -u -V
		fi
		;;
	*) echo "$t" ;;
	esac
}

case "$action" in
start)
	ensure_state_dirs
	for t in "${targets[@]}"; do
		if [[ $t == edge ]]; then
			start_edge
		else
			while read -r r; do start_service "$r"; done < <(expand start "$t")
		fi
	done
	;;
stop)
	# Edge first, so no request reaches a service that is going away.
	for ((i = ${#targets[@]} - 1; i >= 0; i--)); do
		t="${targets[i]}"
		if [[ $t == edge ]]; then
			stop_pid edge "$RUN_DIR/edge.pid" traefik
		else
			while read -r r; do
				stop_pid "$r" "$RUN_DIR/$r.pid" "shortline-$(service_of "$r")"
			done < <(expand stop "$t")
		fi
	done
	;;
status)
	rc=0
	for t in "${targets[@]}"; do
		while read -r r; do status_one "$r" || rc=1; done < <(expand status "$t")
	done
	exit "$rc"
	;;
*) usage ;;
esac
