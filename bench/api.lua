-- wrk script for bench/api.py: the write API (notes and acknowledges spread over incidents)
-- or the incident list.
--   wrk -t2 -c32 -d5s -s bench/api.lua http://127.0.0.1:9096 -- MODE TOKEN INCIDENTS
-- MODE "write": POST /api/v1/incidents/<n>/notes (3 of 4) and /acknowledge (1 of 4), n cycling
-- over 1..INCIDENTS; MODE "list": GET /api/v1/incidents?limit=50; MODE "list-filtered":
-- GET /api/v1/incidents?status=triggered&team=team-3&limit=50.
-- done() prints one line "WRK_JSON {...}" like bench/webhook.lua.

local threads = {}
local counter = 0
local mode = "write"
local incidents = 100
local tid = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "write"
  local token = args[2] or ""
  incidents = tonumber(args[3] or "100")
  tid = rawget(_G, "thread_id") or 0
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  counter = counter + 1
  if mode == "list" then
    return wrk.format("GET", "/api/v1/incidents?limit=50")
  elseif mode == "list-filtered" then
    return wrk.format("GET", "/api/v1/incidents?status=triggered&team=team-3&limit=50")
  end
  local n = (counter * 7 + tid) % incidents + 1
  if counter % 4 == 0 then
    return wrk.format("POST", "/api/v1/incidents/" .. n .. "/acknowledge", nil, "{}")
  end
  local body = string.format('{"text":"bench note %d-%d","actor":"bench"}', tid, counter)
  return wrk.format("POST", "/api/v1/incidents/" .. n .. "/notes", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean
  ))
end
