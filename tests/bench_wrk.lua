-- wrk script for `make bench` (tests/bench.py): POST the AdmissionReview in the file named by
-- the first script argument on every request, and print the run's figures as one JSON line
-- (prefixed "BENCH-JSON ") so bench.py does not parse wrk's human-readable report.

-- With BENCH_SEQ_MARK set, that mark in the body is replaced on every request by a value unique
-- to the run (thread number and sequence), so that every review is a new pod template.

local threads = 0

function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  seq = 0
end

local mark = os.getenv("BENCH_SEQ_MARK")
if mark then
  function request()
    seq = seq + 1
    local body = wrk.body:gsub(mark, string.format("t%d-%d", thread_id, seq), 1)
    return wrk.format(nil, nil, nil, body)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
