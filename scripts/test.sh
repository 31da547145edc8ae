#!/usr/bin/env bash
# The project's test command (`make test`): backing servers + `cargo test`.
#
# Installs the tools if needed, starts the local PostgreSQL / Valkey / NATS that are not
# already running (and not given from outside through DATABASE_URL / VALKEY_URL / NATS_URL),
# exports the URLs (the local NATS and Valkey with their admin users, passwords from
# .local/secrets/) and SHORTLINE_TOOLS_DIR (absolute path of the tools venv; tests start their
# own valkey-server / nats-server from "$SHORTLINE_TOOLS_DIR/bin/"), runs
#   cargo test --workspace --all-targets [EXTRA ARGS...]
# and at the end stops only the servers this script started (a `make up` stack survives).
#
#   scripts/test.sh                      # everything
#   scripts/test.sh -p shortline-api     # extra args go to cargo test
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG="test"
cd "$SHORTLINE_ROOT"

# shellcheck source=scripts/tools.sh
source "$SCRIPTS/tools.sh"

started=()
cleanup() {
	local rc=$?
	if [[ ${#started[@]} -gt 0 ]]; then
		log "stopping the servers this run started: ${started[*]}"
		for s in "${started[@]}"; do bash "$SCRIPTS/servers.sh" stop "$s" || true; done
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for s in postgres valkey nats; do
	if is_external "$s"; then
		log "$s: using the server from the environment"
	elif bash "$SCRIPTS/servers.sh" status "$s" >/dev/null 2>&1; then
		log "$s: already running; leaving it running"
	else
		started+=("$s")
		bash "$SCRIPTS/servers.sh" start "$s"
	fi
done

# The local NATS and Valkey require a login: the tests use their admin users (with their own
# subject and key prefixes). A first start has just generated the passwords.
use_local_credentials
export SHORTLINE_TOOLS_DIR
# With a committed .sqlx/ the query macros need no live database at build time.
if [[ -d $SHORTLINE_ROOT/.sqlx && -z ${SQLX_OFFLINE:-} ]]; then export SQLX_OFFLINE=true; fi

log "DATABASE_URL=$(redact_url "$DATABASE_URL") VALKEY_URL=$(redact_url "$VALKEY_URL") NATS_URL=$(redact_url "$NATS_URL")"
log "SHORTLINE_TOOLS_DIR=$SHORTLINE_TOOLS_DIR"
log "cargo test --workspace --all-targets $*"
cargo test --workspace --all-targets "$@"
