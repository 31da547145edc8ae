#!/usr/bin/env bash
# The local admin API key (`make up` runs this after migrating).
#
#   scripts/api-key.sh          make sure .local/api-key holds a valid admin key (creates one
#                               on first run, or when the database no longer knows the old one)
#   scripts/api-key.sh print    print the key (for SHORTLINE_API_KEY=$(scripts/api-key.sh print))
#
# The file is mode 0600; the key is shown nowhere else. Needs the release binary.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=api-key

target_dir="${CARGO_TARGET_DIR:-target}"
[[ $target_dir == /* ]] || target_dir="$SHORTLINE_ROOT/$target_dir"
API_BIN="$target_dir/release/shortline-api"

if [[ ${1:-} == print ]]; then
	[[ -s $API_KEY_FILE ]] || die "$API_KEY_FILE not found: run 'make up' (or scripts/api-key.sh) first"
	cat "$API_KEY_FILE"
	exit 0
fi

[[ -x $API_BIN ]] || die "$API_BIN not found; run 'make build' first"
ensure_state_dirs
if [[ -s $API_KEY_FILE ]] &&
	SHORTLINE_API_KEY="$(cat "$API_KEY_FILE")" RUST_LOG=warn bash "$SCRIPTS/env.sh" "$API_BIN" keys verify >/dev/null 2>&1; then
	log "admin API key in $API_KEY_FILE is valid"
	exit 0
fi
(
	umask 077
	# Log lines go to stdout too: keep only the key's line.
	RUST_LOG=warn bash "$SCRIPTS/env.sh" "$API_BIN" keys create --admin --name "make up (local admin)" --key-only |
		grep '^sl_' | tail -n 1 >"$API_KEY_FILE.new"
)
[[ -s $API_KEY_FILE.new ]] || die "shortline-api keys create printed no key"
mv "$API_KEY_FILE.new" "$API_KEY_FILE"
chmod 600 "$API_KEY_FILE"
log "created an admin API key in $API_KEY_FILE (mode 0600). Use it as:"
log "  curl -H \"Authorization: Bearer \$(cat $API_KEY_FILE)\" http://$EDGE_LISTEN/users"
