#!/usr/bin/env bash
# Smoke test of a running stack (after `make up`), through the edge only.
#
#   GET  /health              200 {"status":"ok"}
#   GET  /users?per_page=1    200, a JSON array
#   POST /users               201, a user with an id
#   POST /urls                201, a link with a short_code
#   GET  /metrics             404 (never exposed through the edge)
#
# EDGE_URL overrides the edge address (default http://$EDGE_LISTEN).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=smoke
EDGE_URL="${EDGE_URL:-http://$EDGE_LISTEN}"

failures=0
body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT

# request METHOD PATH [JSON BODY] -> sets STATUS and BODY
request() {
	local args=(-sS --max-time 10 -o "$body_file" -w '%{http_code}' -X "$1" "$EDGE_URL$2")
	if [[ $# -ge 3 ]]; then args+=(-H 'Content-Type: application/json' --data "$3"); fi
	STATUS="$(curl "${args[@]}")" || STATUS="000"
	BODY="$(cat "$body_file")"
}

# json_check PYTHON_EXPR: evaluate with `v` = the parsed BODY; prints the result, fails on False.
json_check() {
	python3 -c '
import json, sys
v = json.loads(sys.stdin.read())
r = eval(sys.argv[1])
print(r)
sys.exit(0 if r is not False else 1)
' "$1" <<<"$BODY"
}

check() {
	local name="$1" want="$2"
	if [[ $STATUS == "$want" ]]; then
		log "ok   $name ($STATUS)"
	else
		log "FAIL $name: want $want, got $STATUS: ${BODY:0:300}"
		failures=$((failures + 1))
		return 1
	fi
}

request GET /health
check "GET /health" 200 && {
	json_check 'v == {"status": "ok"}' >/dev/null || {
		log "FAIL GET /health body: $BODY"
		failures=$((failures + 1))
	}
}

request GET '/users?per_page=1'
check "GET /users?per_page=1" 200 && {
	json_check 'isinstance(v, list) and len(v) <= 1' >/dev/null || {
		log "FAIL GET /users?per_page=1 is not a JSON array of at most 1: ${BODY:0:300}"
		failures=$((failures + 1))
	}
}

suffix="$(date +%s)$RANDOM"
request POST /users "{\"username\":\"smoke$suffix\",\"email\":\"smoke$suffix@example.com\"}"
user_id=""
if check "POST /users" 201; then
	user_id="$(json_check 'v["id"]' 2>/dev/null)" || user_id=""
	[[ $user_id =~ ^[0-9]+$ ]] || {
		log "FAIL POST /users: no integer id in ${BODY:0:300}"
		failures=$((failures + 1))
	}
fi

if [[ $user_id =~ ^[0-9]+$ ]]; then
	request POST /urls "{\"user_id\":$user_id,\"original_url\":\"https://example.com/smoke/$suffix\",\"title\":\"smoke $suffix\"}"
	if check "POST /urls" 201; then
		json_check 'isinstance(v.get("short_code"), str) and len(v["short_code"]) >= 6' >/dev/null || {
			log "FAIL POST /urls: no short_code in ${BODY:0:300}"
			failures=$((failures + 1))
		}
	fi
else
	log "skip POST /urls (no user)"
	failures=$((failures + 1))
fi

request GET /metrics
check "GET /metrics through the edge is not exposed" 404 || true

if [[ $failures -gt 0 ]]; then
	log "$failures check(s) failed"
	exit 1
fi
log "all checks passed against $EDGE_URL"
