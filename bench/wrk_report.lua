-- wrk script for the hot-path runs.
--   wrk ... -s wrk_report.lua URL -- TARGETS.tsv
-- TARGETS.tsv: one request a line, "path<TAB>authorization<TAB>if-none-match" (the last
-- two may be empty). Each wrk thread sends them round robin, so every account (API key)
-- gets the same share of the load; genq rate-limits per account. done() prints the
-- run's numbers as one JSON line (microseconds), parsed by common.py.

local reqs = {}
local n, i = 0, 0

init = function(args)
  local file = args[1]
  if file then
    for line in io.lines(file) do
      local path, auth, inm = line:match("^([^\t]*)\t?([^\t]*)\t?([^\t]*)$")
      if path and path ~= "" then
        local h = {}
        if auth ~= "" then h["Authorization"] = auth end
        if inm ~= "" then h["If-None-Match"] = inm end
        table.insert(reqs, wrk.format("GET", path, h))
      end
    end
  end
  n = #reqs
  if n == 0 then
    table.insert(reqs, wrk.format())
    n = 1
  end
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
