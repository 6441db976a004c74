-- wrk script: POST one image as multipart/form-data.
-- usage: IMAGE=path FIELD=images wrk -s benchmarks/multipart.lua -t2 -c32 -d15s http://127.0.0.1:PORT/path
local path = os.getenv("IMAGE")
local field = os.getenv("FIELD") or "images"
local f = assert(io.open(path, "rb"))
local data = f:read("*all")
f:close()
local boundary = "----imgclsbench7d3f"
local ctype = path:match("%.png$") and "image/png" or "image/jpeg"
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
  .. 'Content-Disposition: form-data; name="' .. field .. '"; filename="' .. path:match("[^/]+$") .. '"\r\n'
  .. "Content-Type: " .. ctype .. "\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
done = function(summary, latency, requests)
  io.write(string.format("non200=%d p50_ms=%.2f p99_ms=%.2f\n", summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
