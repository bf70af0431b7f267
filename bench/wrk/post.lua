-- wrk script for the HTTP benchmark: POST one prepared request body to every API.
--
-- The body (JSON or multipart) and its content type are written by bench/http_level.py,
-- one pair per API and server, so every server gets byte-identical inputs on each request:
--   BENCH_BODY=<file> BENCH_CTYPE=<content type> wrk -t1 -cN -dS --latency -s bench/wrk/post.lua URL
-- At the end it prints one line, "BENCH_JSON {...}", with wrk's own counts and latency
-- percentiles (microseconds); errors are non-2xx/3xx answers plus socket errors and timeouts.

local path = os.getenv("BENCH_BODY")
local ctype = os.getenv("BENCH_CTYPE") or "application/json"
local f = assert(io.open(path, "rb"), "cannot read BENCH_BODY " .. tostring(path))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = ctype

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
