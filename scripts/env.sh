#!/usr/bin/env bash
# Run a command with the Shortline dev environment, or print it.
#
#   scripts/env.sh CMD [ARGS...]     e.g. scripts/env.sh target/release/shortline-api migrate
#   eval "$(scripts/env.sh)"         export DATABASE_URL, VALKEY_URL, NATS_URL, ... in a shell
#
# Values already in the environment win; the rest are the local defaults (.env.example).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_TOOLS_NO_INSTALL=1
# shellcheck source=scripts/tools.sh
source "$SCRIPTS/tools.sh"

if [[ $# -eq 0 ]]; then
	for v in DATABASE_URL VALKEY_URL NATS_URL API_LISTEN REDIRECT_LISTEN ANALYTICS_LISTEN \
		LOG_FORMAT RUST_LOG SHORTLINE_TOOLS_DIR; do
		printf 'export %s=%q\n' "$v" "${!v}"
	done
	exit 0
fi
exec "$@"
