-- wrk script for submission runs (bench/tracing.py).
--   wrk ... -s wrk_submit.lua URL -- TARGETS.tsv BODY.json
-- TARGETS.tsv as for wrk_report.lua (only the authorization column is used): each
-- request is `POST /v1/jobs` with BODY.json, the accounts taken round robin (genq
-- rate-limits per account). done() prints the same JSON line as wrk_report.lua.

local reqs = {}
local n, i = 0, 0

init = function(args)
  local body = io.open(args[2]):read("*a")
  for line in io.lines(args[1]) do
    local path, auth = line:match("^([^\t]*)\t?([^\t]*)")
    if auth and auth ~= "" then
      table.insert(reqs, wrk.format("POST", "/v1/jobs",
        {["Authorization"] = auth, ["Content-Type"] = "application/json"}, body))
    end
  end
  n = #reqs
  i = math.random(n) - 1
end

request = function()
  i = i % n + 1
  return reqs[i]
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p75":%d,"p90":%d,' ..
    '"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
