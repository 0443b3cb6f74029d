-- wrk script for `make bench` (tests/bench/__main__.py): POST the AdmissionReview in the file named by
-- the first script argument on every request, and print the run's figures as one JSON line
-- (prefixed "BENCH-JSON ") so tests/bench/__main__.py does not parse wrk's human-readable report.

-- Per request, as tests/bench/__main__.py's fixed-rate client does: BENCH_TOKEN_MARK (the ServiceAccount token
-- volume's name) becomes a fresh kube-api-access-xxxxx name, as the API server makes one per pod;
-- BENCH_SEQ_MARK becomes a value unique to the request and the run (BENCH_RUN numbers the runs:
-- a value sent in an earlier run could be answered from podmedic's memo), so that every review is
-- a new pod template.

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

local function literal(text)  -- a Lua pattern matching `text` itself
  return text and (text:gsub("%p", "%%%0"))
end

local token_mark, seq_mark = literal(os.getenv("BENCH_TOKEN_MARK")), literal(os.getenv("BENCH_SEQ_MARK"))
local run = os.getenv("BENCH_RUN") or "0"
local digits = "0123456789abcdefghijklmnopqrstuvwxyz"

local function token_volume(n)
  local name = "kube-api-access-"
  for _ = 1, 5 do
    local d = n % 36
    name = name .. digits:sub(d + 1, d + 1)
    n = math.floor(n / 36)
  end
  return name
end

if token_mark or seq_mark then
  function request()
    seq = seq + 1
    local body = wrk.body
    if token_mark then
      body = body:gsub(token_mark, token_volume(seq * 2 + thread_id))
    end
    if seq_mark then
      body = body:gsub(seq_mark, string.format("r%s-t%d-%d", run, thread_id, seq), 1)
    end
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
