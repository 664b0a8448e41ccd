-- Appended to every scenario script by bench/run.py: numbers each thread, and at the end prints
-- one line `BENCH_JSON {...}` with the exact figures wrk measured (latencies in microseconds).
-- A scenario counts its own wrong answers in a global `bad` (read from every thread here).
local bench_threads = {}

function setup(thread)
  thread:set("tid", #bench_threads)
  table.insert(bench_threads, thread)
end

function done(summary, latency, requests)
  local bad, counted = 0, 0
  for _, thread in ipairs(bench_threads) do
    bad = bad + (tonumber(thread:get("bad")) or 0)
    counted = counted + (tonumber(thread:get("counted")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,' ..
    '"errors_read":%d,"errors_write":%d,"errors_status":%d,"errors_timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"bad":%d,"counted":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, bad, counted))
end
