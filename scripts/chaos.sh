#!/usr/bin/env bash
# Fault suite against the running stack (`make chaos`, after `make up`): under steady redirect
# load and a trickle of link edits through the edge, it kills and restores, one at a time, a
# redirect replica (SIGKILL, and SIGTERM), an analytics replica (SIGKILL), a NATS node
# (SIGKILL), Valkey (SIGKILL), PostgreSQL (SIGKILL, then restart) and stalls a NATS node
# (SIGSTOP for 5 s, then SIGCONT), and reports per fault: requests by status, failed redirects
# of cached links, event rows against the redirects answered (after the click pipeline
# drained), stale redirects after edits, and the recovery time. scripts/chaos.py has the
# details and the definitions.
#
#   scripts/chaos.sh                   every fault (about 3 minutes; stopped after CHAOS_TIMEOUT,
#                                      900 s, with a failure)
#   CHAOS_FAULTS=redirect-term,valkey-kill,nats-kill scripts/chaos.sh   some of them (.ci/run)
#
# It needs two of everything: REDIRECT_REPLICAS=2, ANALYTICS_REPLICAS=2 and NATS_CLUSTER=3 are
# its defaults. When the running stack has fewer (a plain `make up`), it first restarts the
# services and NATS in that shape (scripts/services.sh, scripts/servers.sh: a fresh NATS
# cluster, whose streams the services create with 3 replicas); `make down` stops it all.
# Servers given by DATABASE_URL / VALKEY_URL / NATS_URL from outside cannot be killed here:
# it refuses to run then.
#
# The last line is the summary:
#   chaos: <n> faults, <r> redirects, <f> failed for cached links, <l> events lost, <d> duplicated, <s> stale
# and the exit status is 0 only when f, l, d and s are 0 (and every fault recovered).
#
# Settings (environment): CHAOS_FAULTS (all: redirect-kill, redirect-term, analytics-kill,
# nats-kill, valkey-kill, postgres-kill, nats-stall), CHAOS_CLIENTS (4 load threads, each from
# its own loopback address 127.0.0.11.. so each has its own bucket of the edge's per-address
# limit of 100/s), CHAOS_RATE (60 redirects/s per thread), CHAOS_LINKS (20 fresh links per
# fault), CHAOS_EDIT_INTERVAL (1 s between edits), CHAOS_PRE (5 s of load before the fault),
# CHAOS_HOLD (8 s down), CHAOS_STALL (5 s stopped), CHAOS_POST (6 s of load after the
# recovery), CHAOS_STALE_BOUND / CHAOS_STALE_BOUND_UNCONFIRMED (2 s / 10 s after an edit the
# API answered acknowledged / unconfirmed), CHAOS_DRAIN_TIMEOUT (120 s), CHAOS_KILL_BUFFER_MAX (50
# clicks a redirect SIGKILL may take with it before they count as lost).
#
# It CHANGES DATA: creates a user and links, edits them, and records their redirects. It
# writes an API key made for the run (revoked at the end).
set -euo pipefail
export REDIRECT_REPLICAS="${REDIRECT_REPLICAS:-2}" ANALYTICS_REPLICAS="${ANALYTICS_REPLICAS:-2}"
export NATS_CLUSTER="${NATS_CLUSTER:-3}"
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=chaos
SHORTLINE_TOOLS_NO_INSTALL=1
# shellcheck source=scripts/tools.sh
source "$SCRIPTS/tools.sh"

((REDIRECT_REPLICAS >= 2)) || die "REDIRECT_REPLICAS must be at least 2 (a killed replica needs a twin)"
((ANALYTICS_REPLICAS >= 2)) || die "ANALYTICS_REPLICAS must be at least 2"
((NATS_CLUSTER >= 3)) || die "NATS_CLUSTER must be at least 3 (R3 streams keep a quorum with one node down)"
for s in postgres valkey nats; do
	is_external "$s" && die "$s is given from outside (*_URL): make chaos kills local servers only"
done

if [[ -z ${SHORTLINE_API_KEY:-} && -s $API_KEY_FILE ]]; then SHORTLINE_API_KEY="$(cat "$API_KEY_FILE")"; fi
[[ -n ${SHORTLINE_API_KEY:-} ]] || die "no admin key: set SHORTLINE_API_KEY or run 'make up' (it writes $API_KEY_FILE)"

# --- the shape: two of everything ------------------------------------------------------
shape_ok() {
	local i
	for ((i = 1; i <= NATS_CLUSTER; i++)); do
		[[ -f $RUN_DIR/nats-$i.pid ]] || return 1
	done
	bash "$SCRIPTS/servers.sh" status all >/dev/null 2>&1 || return 1
	bash "$SCRIPTS/services.sh" status all >/dev/null 2>&1
}

if ! shape_ok; then
	bash "$SCRIPTS/servers.sh" status postgres >/dev/null 2>&1 && bash "$SCRIPTS/servers.sh" status valkey >/dev/null 2>&1 ||
		die "the stack is not running: make up first"
	log "bringing the stack to $REDIRECT_REPLICAS redirect and $ANALYTICS_REPLICAS analytics replicas and a $NATS_CLUSTER-node NATS cluster"
	bash "$SCRIPTS/services.sh" stop all
	if [[ -f $RUN_DIR/nats.pid ]]; then NATS_CLUSTER=1 bash "$SCRIPTS/servers.sh" stop nats; fi
	bash "$SCRIPTS/servers.sh" start nats
	bash "$SCRIPTS/services.sh" start all
	shape_ok || die "the stack did not come up in that shape (make status)"
fi

# --- a key for the run -----------------------------------------------------------------
edge="$EDGE_LISTEN"
trap 'revoke_run_key "http://$edge"' EXIT
run_key "http://$edge" "make chaos"

# --- what chaos.py needs ---------------------------------------------------------------
monitors="" nodes="" redirects=""
for ((i = 1; i <= NATS_CLUSTER; i++)); do
	monitors+="127.0.0.1:$((NATS_MONITOR_PORT + i - 1)) "
	nodes+="nats-$i "
done
base="${REDIRECT_LISTEN/#0.0.0.0:/127.0.0.1:}"
for ((i = 1; i <= REDIRECT_REPLICAS; i++)); do
	name=redirect
	((i > 1)) && name="redirect-$i"
	redirects+="$name=${base%:*}:$((${base##*:} + 10 * (i - 1))) "
done
prefix="${NATS_PREFIX:-shortline}"

CHAOS_EDGE="$edge" SHORTLINE_ROOT="$SHORTLINE_ROOT" CHAOS_RUN_DIR="$RUN_DIR" \
	CHAOS_PSQL="$PG_BIN/psql" CHAOS_NATS_MONITORS="$monitors" CHAOS_NATS_NODES="$nodes" \
	CHAOS_REDIRECTS="$redirects" CHAOS_CLICKS_STREAM="${prefix^^}_CLICKS" \
	CHAOS_ADMIN_KEY="$RUN_KEY" \
	timeout "${CHAOS_TIMEOUT:-900}" python3 "$SCRIPTS/chaos.py"
