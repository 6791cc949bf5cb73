-- wrk script: Alertmanager webhooks (payload version 4), each with a new groupKey and new
-- fingerprints, so that every request opens an incident (the bridge's most expensive path).
--   wrk -t2 -c32 -d10s -s bench/webhook.lua http://127.0.0.1:9096/api/v1/alerts -- ALERTS TOKEN RUN N
-- ALERTS per webhook, bearer TOKEN (may be empty), RUN a name and N a number (0-255) unique per
-- run against one database, so that no two runs share a group or a fingerprint.
-- done() prints one line "WRK_JSON {...}" with the figures bench/ingest.py reads.

local threads = {}
local counter = 0
local alerts_per_request = 1
local token = ""
local run_id = "r"
local run_number = 0
local tid = 0

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  alerts_per_request = tonumber(args[1] or "1")
  token = args[2] or ""
  run_id = args[3] or "r"
  run_number = tonumber(args[4] or "0")
  tid = rawget(_G, "thread_id") or 0 -- set by setup() in this thread's Lua state
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "Alertmanager/0.25.0"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

local function alert(group, n)
  return string.format(
    '{"status":"firing","labels":{"alertname":"BenchHighErrorRate","group":"%s","instance":"web-%d",'
      .. '"job":"checkout","service":"checkout","severity":"critical"},'
      .. '"annotations":{"summary":"5xx ratio above 5%%","description":"checkout is failing requests",'
      .. '"runbook_url":"https://runbooks.example.com/high-error-rate"},'
      .. '"startsAt":"2026-11-27T04:05:13.998173144Z","endsAt":"0001-01-01T00:00:00Z",'
      .. '"generatorURL":"http://prometheus:9090/graph?g0.expr=rate%%28x%%5B5m%%5D%%29",'
      .. '"fingerprint":"%02x%02x%08x%04x"}',
    group, n, run_number % 256, tid % 256, counter % 4294967296, n % 65536
  )
end

function request()
  counter = counter + 1
  local group = string.format("%s-%d-%d", run_id, tid, counter)
  local parts = {}
  for n = 1, alerts_per_request do
    parts[n] = alert(group, n)
  end
  local body = '{"receiver":"bridge","status":"firing","alerts":[' .. table.concat(parts, ",")
    .. '],"groupLabels":{"alertname":"BenchHighErrorRate","group":"' .. group .. '"},'
    .. '"commonLabels":{"alertname":"BenchHighErrorRate","service":"checkout","severity":"critical"},'
    .. '"commonAnnotations":{"summary":"5xx ratio above 5%"},"externalURL":"http://alertmanager:9093",'
    .. '"version":"4","groupKey":"{}:{alertname=\\"BenchHighErrorRate\\", group=\\"' .. group
    .. '\\"}","truncatedAlerts":0}'
  return wrk.format(nil, nil, nil, body)
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
