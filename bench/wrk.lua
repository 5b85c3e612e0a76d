-- bench/wrk.lua: POST one prebuilt body, count statuses, report exact numbers as JSON.
-- Arguments (after `--`): body file, bearer key, Content-Type, then any extra request
-- headers, one argument each, as "Name: value" (e.g. "Cache-Control: no-cache"), or
-- "unique-image: <run id>", which wrk_unique.lua uses (see there).
-- Also counts the values of the gateway's x-gateway-cache answer header.
-- No request() function here: wrk then builds the request once and sends it as is.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_number", #threads)
end

run_id, head, rest = nil, nil, nil

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  wrk.headers["Content-Type"] = args[3]
  for i = 4, #args do
    local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
    assert(name, "extra header not in 'Name: value' form: " .. args[i])
    if name == "unique-image" then
      run_id = value
    else
      wrk.headers[name] = value
    end
  end
  if run_id then  -- the new chunk goes right after IHDR (8 + 25 bytes into the PNG)
    local png = assert(string.find(wrk.body, "\137PNG\r\n\26\n", 1, true), "no PNG in the body")
    head, rest = wrk.body:sub(1, png + 32), wrk.body:sub(png + 33)
  end
  statuses = {}
  caches = {}
end


function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local cache = headers["x-gateway-cache"] or headers["X-Gateway-Cache"]
  if cache then
    caches[cache] = (caches[cache] or 0) + 1
  end
end

local function merged(name)
  local counts = {}
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get(name) or {}) do
      counts[key] = (counts[key] or 0) + n
    end
  end
  return counts
end

function done(summary, latency, requests)
  local parts = {}
  for code, n in pairs(merged("statuses")) do
    table.insert(parts, string.format('"%d": %d', code, n))
  end
  local cache_parts = {}
  for value, n in pairs(merged("caches")) do
    table.insert(cache_parts, string.format('"%s": %d', value, n))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"connect": %d, "read": %d, "write": %d, "timeout": %d, "statuses": {%s}, '
      .. '"cache": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, table.concat(parts, ", "),
    table.concat(cache_parts, ", ")))
end
