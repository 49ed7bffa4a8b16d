-- wrk script: send pre-signed deliveries from a request file, each once, and count the answers.
--
-- wrk -t1 -c16 -d10s -s deliveries.lua URL -- FILE LIMIT MODE PACE_MS
--   FILE     records "<length>\n<raw HTTP request>" (tests/benchmarks/corpus.py)
--   LIMIT    how many records to load
--   MODE     "duration": run for -d; "all": stop the thread once every loaded delivery is
--            answered (wrk itself then waits for SIGINT, which the runner sends)
--   PACE_MS  delay before each request on a connection (0: as fast as answers come)
-- Once the records run out, connections send GET /healthz instead, so no delivery is ever sent
-- twice; those answers ("ok\n") are not counted. The done() line is JSON for the runner.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local limit = tonumber(args[2])
  queue = {}
  while #queue < limit do
    local header = file:read("*l")
    if not header then break end
    queue[#queue + 1] = file:read(tonumber(header))
  end
  file:close()
  loaded = #queue
  stop_when_all = args[3] == "all"
  local pace = tonumber(args[4]) or 0
  if pace > 0 then
    function delay() return pace end
  end
  health = wrk.format("GET", "/healthz")
  -- wrk calls request() once before the run to inspect it; that first request is a health
  -- check, so the inspection never swallows a delivery.
  calls = 0
  sent = 0
  answered = 0
  ok = 0
  failed = 0
  started = false
end

function request()
  calls = calls + 1
  if calls == 1 or sent >= loaded then
    return health
  end
  if not started then
    started = true
    io.write("GO\n")
    io.flush()
  end
  sent = sent + 1
  return queue[sent]
end

function response(status, headers, body)
  if body == "ok\n" then return end
  answered = answered + 1
  if status == 200 then ok = ok + 1 else failed = failed + 1 end
  if stop_when_all and answered == loaded then
    io.write("DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local t = threads[1]
  io.write(string.format(
    '{"loaded": %d, "sent": %d, "answered": %d, "ok": %d, "failed": %d, "requests": %d, ' ..
    '"duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"socket_errors": %d}\n',
    t:get("loaded"), t:get("sent"), t:get("answered"), t:get("ok"), t:get("failed"),
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
