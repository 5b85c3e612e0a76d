-- Atomic check-and-charge over every counter a request needs.
-- KEYS[i]: counter i. ARGV[1]: the time to decide at, or "" for Redis's own clock (the
-- normal case; tests inject a clock). Then, 4 per counter: amount, limit, window start, end.
-- An extra last key is the charge's receipt, kept for the milliseconds in the last ARGV
-- when the charge is admitted (refund.lua takes it back once).
-- The last ARGV is the chargeback usage ("" for none), see usage.lua: the last keys are its
-- books, moved here so that the books and the quotas can never disagree; Redis's clock must
-- be in the day they name, as in every counter's window.
-- Returns {"clock", now} when Redis's clock is outside a window (the caller's was stale),
-- {"refused", now, used[], refused_indexes[]} charging nothing, or {"ok", now, used_after[]}.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local n = math.floor((#ARGV - 2) / 4)
for i = 1, n do
  local base = (i - 1) * 4 + 1
  if now < tonumber(ARGV[base + 3]) or now >= tonumber(ARGV[base + 4]) then
    return {"clock", tostring(now)}
  end
end
if usage_outside(ARGV[#ARGV], now) then
  return {"clock", tostring(now)}
end
local used, refused = {}, {}
for i = 1, n do
  local base = (i - 1) * 4 + 1
  local amount = tonumber(ARGV[base + 1])
  used[i] = tonumber(redis.call("GET", KEYS[i]) or "0")
  if amount > 0 and used[i] + amount > tonumber(ARGV[base + 2]) then
    refused[#refused + 1] = i - 1
  end
end
if #refused > 0 then
  return {"refused", tostring(now), used, refused}
end
for i = 1, n do
  local base = (i - 1) * 4 + 1
  local amount = tonumber(ARGV[base + 1])
  if amount > 0 then
    used[i] = redis.call("INCRBY", KEYS[i], amount)
    -- Kept a minute past the window so that late refunds still land.
    redis.call("EXPIREAT", KEYS[i], math.ceil(tonumber(ARGV[base + 4])) + 60)
  end
end
local usage = ARGV[#ARGV]
if #KEYS > n + usage_keys(usage) then
  redis.call("SET", KEYS[n + 1], "1", "PX", ARGV[#ARGV - 1])
end
add_usage(usage, 1)
return {"ok", tostring(now), used}
