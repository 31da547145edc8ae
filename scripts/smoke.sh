#!/usr/bin/env bash
# Smoke test of a running stack (after `make up`), through the edge only.
#
#   GET  /health              200 {"status":"ok"}
#   GET  /users?per_page=1    200, a JSON array
#   POST /users               201, a user with an id
#   POST /urls                201, a link with a short_code
#   GET  /{short_code}        302 to exactly that URL (twice: MISS then HIT), HEAD 302 too
#   GET  /events?url_id=…    two `redirect` events (HEAD logs none); stats redirect_count 2
#   PUT  /urls/{id}           deactivate, then GET /{short_code} is 404 JSON at once
#   link rules                a phone follows its rule (query forwarded), max_clicks=1 then
#                             410, a password form posted through the edge answers 303
#   GET  /no-such-code        404 JSON
#   GET  /metrics             404 from the edge itself, also as /METRICS, //metrics, /metrics/
#                             (no service's metrics are ever exposed through the edge)
#   GET  /users without a key 401 problem with WWW-Authenticate: Bearer; with the key: RateLimit
#   POST /urls with 10 MB     413 JSON, 20 times in a row (never a 502 from the edge)
#   a burst of redirects      429 from the edge's rate limit once the burst is spent (the
#                             redirect service never answers 429), then served again
#
# Requests send the admin key from SHORTLINE_API_KEY, else .local/api-key (make up writes it).
# EDGE_URL overrides the edge address (default http://$EDGE_LISTEN). SMOKE_RATE_LIMIT=0 skips
# the rate-limit burst (for an edge configured with other limits).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
SHORTLINE_LOG_TAG=smoke
EDGE_URL="${EDGE_URL:-http://$EDGE_LISTEN}"
if [[ -z ${SHORTLINE_API_KEY:-} && -s $API_KEY_FILE ]]; then SHORTLINE_API_KEY="$(cat "$API_KEY_FILE")"; fi
auth=()
if [[ -n ${SHORTLINE_API_KEY:-} ]]; then auth=(-H "Authorization: Bearer $SHORTLINE_API_KEY"); fi

failures=0
body_file="$(mktemp)"
big_file=""
trap 'rm -f "$body_file" "$big_file"' EXIT

# request METHOD PATH [JSON BODY] -> sets STATUS and BODY
request() {
	local args=(-sS --max-time 10 -o "$body_file" -w '%{http_code}' "${auth[@]}" -X "$1" "$EDGE_URL$2")
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

# redirect_check METHOD CODE WANT_LOCATION WANT_X_CACHE (empty: any)
redirect_check() {
	local headers status location cache method=(-X "$1")
	[[ $1 == HEAD ]] && method=(-I)
	headers="$(curl -sS --max-time 10 -o /dev/null -D - "${method[@]}" "$EDGE_URL/$2" | tr -d '\r')" || headers=""
	status="$(awk 'NR == 1 {print $2}' <<<"$headers")"
	location="$(awk -F': ' 'tolower($1) == "location" {print $2}' <<<"$headers")"
	cache="$(awk -F': ' 'tolower($1) == "x-cache" {print $2}' <<<"$headers")"
	if [[ $status == 302 && $location == "$3" && (-z $4 || $cache == "$4") ]]; then
		log "ok   $1 /{short_code} (302, X-Cache: $cache)"
	else
		log "FAIL $1 /$2: want 302 to $3 (X-Cache ${4:-any}), got $status to '$location' (X-Cache '$cache')"
		failures=$((failures + 1))
	fi
}

# rule_answer NAME WANT_STATUS WANT_LOCATION (empty: any) CURL_ARGS...: one redirect-side answer.
rule_answer() {
	local name="$1" want="$2" want_location="$3" headers status location
	shift 3
	headers="$(curl -sS --max-time 10 -o /dev/null -D - "$@" | tr -d '\r')" || headers=""
	status="$(awk 'NR == 1 {print $2}' <<<"$headers")"
	location="$(awk -F': ' 'tolower($1) == "location" {print $2}' <<<"$headers")"
	if [[ $status == "$want" && (-z $want_location || $location == "$want_location") ]]; then
		log "ok   $name ($status)"
	else
		log "FAIL $name: want $want ${want_location:+to $want_location}, got $status to '$location'"
		failures=$((failures + 1))
	fi
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
	target="https://example.com/smoke/$suffix?q=1&r=%20x"
	request POST /urls "{\"user_id\":$user_id,\"original_url\":\"$target\",\"title\":\"smoke $suffix\"}"
	code=""
	url_id=""
	if check "POST /urls" 201; then
		code="$(json_check 'v["short_code"]' 2>/dev/null)" || code=""
		url_id="$(json_check 'v["id"]' 2>/dev/null)" || url_id=""
		[[ ${#code} -ge 6 ]] || {
			log "FAIL POST /urls: no short_code in ${BODY:0:300}"
			failures=$((failures + 1))
		}
	fi
	if [[ -n $code && -n $url_id ]]; then
		for want_cache in MISS HIT; do
			redirect_check GET "$code" "$target" "$want_cache"
		done
		redirect_check HEAD "$code" "$target" ""
		# Every GET redirect logs one event (HEAD none), through the click stream and the
		# analytics consumer; give the pipeline a few seconds.
		events_seen=""
		for _ in $(seq 50); do
			request GET "/events?url_id=$url_id&event_type=redirect"
			events_seen="$(json_check 'len(v)' 2>/dev/null)" || events_seen=""
			[[ $events_seen == 2 ]] && break
			sleep 0.2
		done
		if [[ $events_seen == 2 ]]; then
			log "ok   two GET redirects logged two redirect events"
		else
			log "FAIL redirect events for the link: want 2, got '${events_seen}': ${BODY:0:300}"
			failures=$((failures + 1))
		fi
		request GET "/urls/$url_id/stats"
		if check "GET /urls/{id}/stats" 200; then
			json_check 'v["redirect_count"] == 2' >/dev/null || {
				log "FAIL stats redirect_count is not 2: ${BODY:0:300}"
				failures=$((failures + 1))
			}
		fi
		request PUT "/urls/$url_id" '{"is_active": false}'
		check "PUT /urls/{id} deactivate" 200 || true
		request GET "/$code"
		check "GET /{short_code} right after deactivation" 404 || true
	fi
		# Link rules through the edge: a phone follows the rule with its query forwarded,
		# the click limit of 1 then answers 410, and a password form posted answers 303.
		phone='Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36'
		request POST /urls "{\"user_id\":$user_id,\"original_url\":\"$target\",\"max_clicks\":1,\"forward_query\":true,\"rules\":[{\"when\":{\"device\":[\"mobile\"]},\"target\":\"https://m.example.com/smoke\"}]}"
		if check "POST /urls with rules" 201; then
			rcode="$(json_check 'v["short_code"]' 2>/dev/null)" || rcode=""
			rule_answer "GET /{code} by a phone" 302 "https://m.example.com/smoke?utm_source=smoke" -A "$phone" "$EDGE_URL/$rcode?utm_source=smoke"
			rule_answer "GET /{code} past max_clicks" 410 "" -A "$phone" "$EDGE_URL/$rcode"
		fi
		request POST /urls "{\"user_id\":$user_id,\"original_url\":\"$target\",\"password\":\"smoke-pass\"}"
		if check "POST /urls with a password" 201; then
			pcode="$(json_check 'v["short_code"]' 2>/dev/null)" || pcode=""
			rule_answer "GET /{code} by a browser: the form" 200 "" -H 'Accept: text/html' "$EDGE_URL/$pcode"
			rule_answer "POST /{code} with the password" 303 "$target" -H 'Accept: text/html' --data 'password=smoke-pass' "$EDGE_URL/$pcode"
		fi
else
	log "skip POST /urls (no user)"
	failures=$((failures + 1))
fi

request GET /no-such-code-$suffix
check "GET unknown code" 404 && {
	json_check 'isinstance(v.get("error"), str)' >/dev/null || {
		log "FAIL GET unknown code: not a JSON error: ${BODY:0:300}"
		failures=$((failures + 1))
	}
}

for path in /metrics /METRICS //metrics /metrics/ /Metrics/x; do
	request GET "$path"
	if check "GET $path through the edge is not exposed" 404; then
		# The edge's own 404, not a service's page (metrics text, or a JSON error).
		if [[ $BODY == *"# TYPE"* || $BODY == *"# HELP"* || $BODY == "{"* ]]; then
			log "FAIL GET $path: answered by a service, not by the edge: ${BODY:0:200}"
			failures=$((failures + 1))
		fi
	fi
done

# The edge's rate limit on the redirect route (config/traefik/dynamic.yml: 100/s, burst 200
# per client address): a burst of requests for an unknown code (cheap for the redirect
# service) until the edge answers 429, then wait until it lets requests through again, so
# whatever runs next is not limited.
if [[ ${SMOKE_RATE_LIMIT:-1} != 0 ]]; then
	if python3 - "$EDGE_URL/smoke-ratelimit-$suffix" <<'PYEOF'; then
import sys, threading, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
url, seen, lock, stop = sys.argv[1], {}, threading.Lock(), threading.Event()
def one(_):
    if stop.is_set():
        return
    try:
        code = urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        code = e.code
    except Exception:
        code = 0
    with lock:
        seen[code] = seen.get(code, 0) + 1
    if code == 429:
        stop.set()
with ThreadPoolExecutor(max_workers=32) as pool:
    list(pool.map(one, range(2000)))
print(" ".join(f"{k}x{v}" for k, v in sorted(seen.items())), file=sys.stderr)
sys.exit(0 if seen.get(429) and set(seen) <= {404, 429} else 1)
PYEOF
		log "ok   a burst of redirects gets 429 from the edge's rate limit"
	else
		log "FAIL a burst of redirects: no 429 from the edge (or other statuses; counts above)"
		failures=$((failures + 1))
	fi
	for _ in $(seq 150); do
		request GET "/smoke-ratelimit-$suffix"
		[[ $STATUS != 429 ]] && break
		sleep 0.2
	done
	check "GET /{short_code} once the rate limit refilled" 404 || true
fi

# Access control: no key is a 401 problem with a Bearer challenge; a key's answers carry the
# IETF rate-limit fields.
headers="$(curl -sS --max-time 10 -o "$body_file" -D - "$EDGE_URL/users?per_page=1" | tr -d '\r')" || headers=""
BODY="$(cat "$body_file")"
if [[ $(awk 'NR == 1 {print $2}' <<<"$headers") == 401 ]] &&
	grep -qi '^www-authenticate: Bearer' <<<"$headers" &&
	json_check 'v.get("status") == 401 and isinstance(v.get("error"), str)' >/dev/null; then
	log "ok   GET /users without a key (401 problem, WWW-Authenticate: Bearer)"
else
	log "FAIL GET /users without a key: want a 401 problem with WWW-Authenticate, got: ${headers%%$'\n'*} ${BODY:0:200}"
	failures=$((failures + 1))
fi
if [[ ${#auth[@]} -gt 0 ]]; then
	headers="$(curl -sS --max-time 10 -o /dev/null -D - "${auth[@]}" "$EDGE_URL/users?per_page=1" | tr -d '\r')" || headers=""
	if grep -qi '^ratelimit-policy: "per-key";q=' <<<"$headers" && grep -qi '^ratelimit: "per-key";r=' <<<"$headers"; then
		log "ok   GET /users with the key carries RateLimit-Policy and RateLimit"
	else
		log "FAIL GET /users with the key: no RateLimit fields in: $(tr '\n' ' ' <<<"$headers")"
		failures=$((failures + 1))
	fi
fi

# A body far over JSON_MAX_BYTES: the API reads and discards the rest before it answers 413,
# so the edge, still sending the body, relays the 413 instead of a 502 for a reset connection.
big_file="$(mktemp)"
head -c 10485760 /dev/zero | tr '\0' 'a' >"$big_file"
oversized=()
for _ in $(seq 20); do
	STATUS="$(curl -sS --max-time 30 -o "$body_file" -w '%{http_code}' "${auth[@]}" -X POST "$EDGE_URL/urls" \
		-H 'Content-Type: application/json' --data-binary "@$big_file")" || STATUS="000"
	BODY="$(cat "$body_file")"
	if [[ $STATUS == 413 ]] && ! json_check 'isinstance(v.get("error"), str)' >/dev/null 2>&1; then
		STATUS="413-not-json"
	fi
	oversized+=("$STATUS")
done
rm -f "$big_file"
not_413=0
for status in "${oversized[@]}"; do
	[[ $status == 413 ]] || not_413=$((not_413 + 1))
done
if ((not_413 == 0)); then
	log "ok   POST /urls with a 10 MB body: 413 JSON 20 times"
else
	log "FAIL POST /urls with a 10 MB body: want 413 JSON 20 times, got ${oversized[*]}"
	failures=$((failures + 1))
fi

if [[ $failures -gt 0 ]]; then
	log "$failures check(s) failed"
	exit 1
fi
log "all checks passed against $EDGE_URL"
