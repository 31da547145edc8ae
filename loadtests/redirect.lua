-- wrk script for loadtests/redirect.sh: GET /{code} with codes from a file, one per line.
--
--   wrk -t2 -c64 -d15s --latency -s loadtests/redirect.lua URL -- CODES_FILE [random]
--   wrk -t2 -c256 -d15s --latency -s loadtests/redirect.lua URL -- CODES_FILE random 2 0 DELAY_MS
--   wrk -t2 -c64 -d5s -s loadtests/redirect.lua URL -- CODES_FILE seq THREADS [START]
--
-- random (default): every request picks a code uniformly at random (per-thread seed). With
--      DELAY_MS > 0 each connection waits that long after a response before its next request
--      (wrk's delay() hook), so C connections offer about C * 1000 / DELAY_MS requests per
--      second instead of as many as the server answers: latency at a fixed load.
-- seq: the threads walk the file in order from line START (0-based, a multiple of THREADS),
--      interleaved (thread i takes lines START+i, START+i+THREADS, ...), wrapping around; used
--      to touch every code once (cache fill), possibly over several runs.
-- done() prints one line that redirect.sh parses:
--   RESULT requests=N secs=S rps=R p50_us=A p99_us=B max_us=C status_errors=D socket_errors=E
-- (status_errors: responses with status >= 400; socket_errors: connect/read/write/timeout),
-- and in seq mode also
--   SEQ next=K
-- K: every line below K has been requested (start the next run there).

local counter = 0
local threads = {}

-- Runs in wrk's main Lua state, once per thread, right before that thread's init().
function setup(thread)
	thread:set("tid", counter)
	counter = counter + 1
	table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
local codes = {}
local n = 0
local mode = "random"
local step = 1
local pos = 0
-- wrk (4.x) calls request() once on thread 0 right after init() to check the script and
-- never sends that request, so in seq mode that call must not use up a line.
local probe = false
-- Globals (read from the main state in done()): seq requests made, and the start line.
sent = 0
start = 0

function init(args)
	local path = args[1]
	if path == nil then
		error("usage: -- CODES_FILE [random | seq THREADS [START]]")
	end
	mode = args[2] or "random"
	local f = assert(io.open(path, "r"))
	for line in f:lines() do
		if line ~= "" then
			n = n + 1
			codes[n] = "/" .. line
		end
	end
	f:close()
	if n == 0 then
		error("no codes in " .. path)
	end
	-- tid was set on this thread's state by setup().
	step = tonumber(args[3]) or 1
	start = tonumber(args[4]) or 0
	local pause = tonumber(args[5]) or 0
	if mode == "random" and pause > 0 then
		-- wrk looks for this global after init() and then paces every connection.
		delay = function()
			return pause
		end
	end
	pos = start + (tid or 0)
	probe = (tid == 0)
	math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

function request()
	local path
	if probe then
		probe = false
		return wrk.format("GET", codes[1])
	end
	if mode == "seq" then
		path = codes[(pos % n) + 1]
		pos = pos + step
		sent = sent + 1
	else
		path = codes[math.random(n)]
	end
	return wrk.format("GET", path)
end

function done(summary, latency, requests)
	local e = summary.errors
	local secs = summary.duration / 1e6
	io.write(string.format(
		"RESULT requests=%d secs=%.3f rps=%.1f p50_us=%d p99_us=%d max_us=%d status_errors=%d socket_errors=%d\n",
		summary.requests, secs, summary.requests / secs,
		latency:percentile(50), latency:percentile(99), latency.max,
		e.status, e.connect + e.read + e.write + e.timeout))
	local least, first
	for _, thread in ipairs(threads) do
		local k = thread:get("sent")
		if k ~= nil and k > 0 then
			first = first or thread:get("start")
			least = (least == nil or k < least) and k or least
		end
	end
	if least ~= nil then
		io.write(string.format("SEQ next=%d\n", first + least * #threads))
	end
end
