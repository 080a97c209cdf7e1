-- wrk script for bench/load_recommend.sh: POST /v1/recommend for a user
-- (share 1 - EVENT_SHARE) and POST /v1/events (EVENT_SHARE), users u1..uUSERS,
-- items from ITEMS_FILE (one id a line). Prints p50/p99/p99.9 and the
-- non-2xx count at the end.
local users = tonumber(os.getenv("USERS") or "500")
local event_share = tonumber(os.getenv("EVENT_SHARE") or "0.2")
local items = {}
for line in io.lines(os.getenv("ITEMS_FILE")) do items[#items + 1] = line end
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("seed", counter)
end

function init(args)
  math.randomseed(seed * 7919)
end

function request()
  local user = "u" .. math.random(users)
  if math.random() < event_share then
    local item = items[math.random(#items)]
    return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"},
                      '{"user": "' .. user .. '", "item": "' .. item .. '"}')
  end
  return wrk.format("POST", "/v1/recommend", {["Content-Type"] = "application/json"},
                    '{"user": "' .. user .. '", "k": 10, "retrieve": 200, "context": {"hour": ' .. math.random(0, 23) .. '}}')
end

function done(summary, latency, requests)
  io.write(string.format("requests %d in %.1f s: %.0f/s; latency p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000, latency.max / 1000))
  io.write(string.format("errors: connect %d, read %d, write %d, timeout %d, non-2xx %d\n", summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout, summary.errors.status))
end
