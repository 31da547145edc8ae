#!/usr/bin/env bash
# Fuzz the running stack's API with Schemathesis (after `make up`), at the api service's own
# address. (Through the edge, Traefik refuses paths with ambiguous encoded characters such as
# %3F, %23, %25, %2F with an empty 400 before any routing, a deliberate edge default that the
# content-type checks would count; FUZZ_URL=http://$EDGE_LISTEN fuzzes through it anyway.)
#
#   scripts/fuzz.sh                  the full run: at least FUZZ_CASES (2000) generated cases
#   FUZZ_CASES=500 scripts/fuzz.sh   the reduced run of .ci/run
#
# Every operation of GET /openapi.json, in Schemathesis' four phases: the documented examples,
# coverage (boundary and invalid values of every parameter), fuzzing (random valid and invalid
# requests), and stateful sequences along the document's links (create -> read -> update ->
# delete). Checks: no 5xx (not_a_server_error); each status code, content type, header and body
# as the document declares it (status_code_conformance, content_type_conformance,
# response_headers_conformance, response_schema_conformance); schema-valid requests are
# accepted (positive_data_acceptance: 2xx, or the 404/409/422 of a missing or conflicting
# resource or a refused target) and schema-invalid ones refused (negative_data_rejection).
#
# Requests carry a key made for the run (POST /keys with the stack's admin key, from
# SHORTLINE_API_KEY or .local/api-key): admin, a rate limit of 1,000,000 per minute so the
# API never answers 429, expiring after an hour, revoked at the end. The fuzzer may revoke
# keys it created, never one that existed before (scripts/fuzz_hooks.py). Requests are paced
# to FUZZ_RATE (40/s), under the edge's own per-address limit for the API route.
#
# It CHANGES DATA: creates, updates and deletes users, links, events and keys. Run it on a
# development or CI stack, never against data you need.
#
# Settings (environment): FUZZ_CASES (2000), FUZZ_WORKERS (2), FUZZ_SEED (random; printed, and
# the same seed replays the same run on the same data), FUZZ_RATE (40/s), FUZZ_URL (the api
# service, http://$API_LISTEN; the edge, http://$EDGE_LISTEN, works too), FUZZ_REPORT_DIR
# ($STATE_DIR/fuzz: Schemathesis' JSON report and its output), SHORTLINE_FUZZ_VENV
# (tools/fuzz-venv: Schemathesis from the pinned deploy/fuzz-requirements.txt).
#
# The last line is the summary: `fuzz: <n> cases, <e> server errors, <v> schema violations`
# (server errors: failures of not_a_server_error; schema violations: every other failed
# check). Exit status 0 only when both are 0 and Schemathesis reported no error.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=fuzz

FUZZ_CASES="${FUZZ_CASES:-2000}"
FUZZ_WORKERS="${FUZZ_WORKERS:-2}"
FUZZ_RATE="${FUZZ_RATE:-40/s}"
FUZZ_URL="${FUZZ_URL:-http://$API_LISTEN}"
FUZZ_URL="${FUZZ_URL%/}"
FUZZ_REPORT_DIR="${FUZZ_REPORT_DIR:-$STATE_DIR/fuzz}"
FUZZ_VENV="${SHORTLINE_FUZZ_VENV:-$SHORTLINE_ROOT/tools/fuzz-venv}"
FUZZ_REQUIREMENTS="$SHORTLINE_ROOT/deploy/fuzz-requirements.txt"
[[ $FUZZ_CASES =~ ^[1-9][0-9]*$ ]] || die "FUZZ_CASES must be a positive integer"
if [[ -z ${FUZZ_SEED:-} ]]; then FUZZ_SEED=$((RANDOM * 32768 + RANDOM)); fi

# --- Schemathesis, from the pinned requirements, in its own venv ------------------------
fuzz_venv() {
	local want
	want="$(cat "$FUZZ_REQUIREMENTS" <(python3 -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)"
	if [[ "$(cat "$FUZZ_VENV/.shortline-fuzz-stamp" 2>/dev/null)" == "$want" && -x $FUZZ_VENV/bin/schemathesis ]]; then
		return 0
	fi
	log "installing Schemathesis (deploy/fuzz-requirements.txt) into $FUZZ_VENV"
	mkdir -p "$(dirname "$FUZZ_VENV")"
	if [[ ! -x $FUZZ_VENV/bin/python ]] || ! "$FUZZ_VENV/bin/python" -c '' 2>/dev/null; then
		rm -rf "$FUZZ_VENV"
		python3 -m venv "$FUZZ_VENV"
	fi
	rm -f "$FUZZ_VENV/.shortline-fuzz-stamp"
	"$FUZZ_VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q \
		-r "$FUZZ_REQUIREMENTS"
	printf '%s\n' "$want" >"$FUZZ_VENV/.shortline-fuzz-stamp"
}
fuzz_venv

# --- The admin key, and a key for this run ------------------------------------------------
if [[ -z ${SHORTLINE_API_KEY:-} && -s $API_KEY_FILE ]]; then SHORTLINE_API_KEY="$(cat "$API_KEY_FILE")"; fi
[[ -n ${SHORTLINE_API_KEY:-} ]] || die "no admin key: set SHORTLINE_API_KEY or run 'make up' (it writes $API_KEY_FILE)"

code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$FUZZ_URL/openapi.json")" || code=000
[[ $code == 200 ]] || die "$FUZZ_URL/openapi.json answers $code: is the stack up (make up)?"

mkdir -p "$FUZZ_REPORT_DIR"
work="$(mktemp -d)"
cleanup() {
	revoke_run_key "$FUZZ_URL"
	rm -rf "$work"
}
trap cleanup EXIT
run_key "$FUZZ_URL" "make fuzz"
log "fuzz key $RUN_KEY_ID created (revoked at the end)"

# --- The run ----------------------------------------------------------------------------
# -n is per operation and phase; inputless operations (GET /health, /ready, /keys) yield a
# handful of cases, so the rest share FUZZ_CASES with some margin.
n_ops="$(curl -sS --max-time 10 "$FUZZ_URL/openapi.json" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
print(sum(1 for item in doc["paths"].values() for m in item if m in methods))')"
per_op=$(((FUZZ_CASES + n_ops - 1) / n_ops))
log "fuzzing $n_ops operations at $FUZZ_URL: about $FUZZ_CASES cases (-n $per_op), $FUZZ_WORKERS workers, seed $FUZZ_SEED, paced to $FUZZ_RATE"

report_json="$FUZZ_REPORT_DIR/report.json"
rm -f "$report_json"
rc=0
(
	cd "$work"
	# The key reaches Schemathesis through the environment, not its command line.
	export SHORTLINE_FUZZ_KEY="$RUN_KEY" SHORTLINE_FUZZ_KEEP_KEYS_UPTO="$RUN_KEY_ID"
	export SCHEMATHESIS_HOOKS="$SCRIPTS/fuzz_hooks.py"
	exec "$FUZZ_VENV/bin/schemathesis" --config-file "$SCRIPTS/fuzz.toml" run "$FUZZ_URL/openapi.json" \
		--max-examples "$per_op" --workers "$FUZZ_WORKERS" --seed "$FUZZ_SEED" --rate-limit "$FUZZ_RATE" \
		--report json --report-json-path "$report_json" --no-color
) >"$FUZZ_REPORT_DIR/output.txt" 2>&1 || rc=$?
# The failures and Schemathesis' own summary (the whole output is in output.txt).
sed -n '/^=* FAILURES =*$/,$p' "$FUZZ_REPORT_DIR/output.txt" | tail -n 200
[[ -s $report_json ]] || {
	tail -n 40 "$FUZZ_REPORT_DIR/output.txt" >&2
	die "Schemathesis wrote no report (exit $rc); its output: $FUZZ_REPORT_DIR/output.txt"
}
python3 "$SCRIPTS/fuzz_summary.py" "$report_json" "$rc"
