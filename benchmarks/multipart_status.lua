-- wrk script: POST one image as multipart/form-data and count the responses by status.
-- usage: IMAGE=path FIELD=images wrk -s multipart_status.lua -t2 -c128 -d15s http://127.0.0.1:PORT/path
--
-- The request is multipart.lua's, beside it (this script overrides its done()). After wrk's summary it
-- prints one line:
--   statuses=200:N,503:M retry_after_missing=K p50_ms=... p99_ms=...
-- retry_after_missing counts 503 answers without a Retry-After header. wrk's latency percentiles cover
-- every answer (fast 503s included); wrk's Lua callbacks never see a request's latency, so the latency of
-- accepted (200) requests alone is measured by serve_load.py's probe client instead.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "multipart.lua")

-- Each wrk thread runs its own Lua state: the counters below are per thread, summed in done().
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

counts = {}
retry_after_missing = 0

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
  if status == 503 and headers["Retry-After"] == nil and headers["retry-after"] == nil then
    retry_after_missing = retry_after_missing + 1
  end
end

function done(summary, latency, requests)
  local total, missing = {}, 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
    missing = missing + thread:get("retry_after_missing")
  end
  local keys = {}
  for status in pairs(total) do table.insert(keys, status) end
  table.sort(keys)
  local parts = {}
  for _, status in ipairs(keys) do table.insert(parts, status .. ":" .. total[status]) end
  io.write(string.format("statuses=%s retry_after_missing=%d p50_ms=%.2f p99_ms=%.2f\n", table.concat(parts, ","),
    missing, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
