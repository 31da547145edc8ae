#!/usr/bin/env bash
# Writes the NATS and Valkey passwords compose.yml requires into .env (next to compose.yml,
# git-ignored, mode 0600): each one that .env does not have yet gets 48 random hex characters
# from /dev/urandom (URL-safe: they go into the services' NATS_URL / VALKEY_URL as they are).
# Existing values are kept, so running it again changes nothing.
#
#   scripts/compose-env.sh        (make compose-env)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=compose-env

env_file="$SHORTLINE_ROOT/.env"
(
	umask 077
	touch "$env_file"
)
chmod 600 "$env_file"
added=0
for name in NATS_ADMIN_PASSWORD NATS_API_PASSWORD NATS_REDIRECT_PASSWORD NATS_ANALYTICS_PASSWORD \
	VALKEY_ADMIN_PASSWORD VALKEY_SHORTLINE_PASSWORD; do
	grep -q "^$name=." "$env_file" && continue
	value="$(head -c 24 /dev/urandom | od -An -v -tx1 | tr -d ' \n')"
	[[ ${#value} == 48 ]] || die "could not generate a password from /dev/urandom"
	printf '%s=%s\n' "$name" "$value" >>"$env_file"
	added=$((added + 1))
done
log "$env_file: $added password(s) added; the others were already there"
