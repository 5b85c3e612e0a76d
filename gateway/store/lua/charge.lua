-- Atomic check-and-charge over every counter a request needs.
-- KEYS[i]: counter i. ARGV[1]: the time to decide at, or "" for Redis's own clock (the
-- normal case; tests inject a clock). Then, 5 per counter: amount, limit, window start,
-- end, and its alert thresholds ("" for none, else percents of the limit: "50,80,100").
-- After the counters, one key per counter with thresholds, in order: its alert marker, the
-- highest percent already reported in this window (see below).
-- An extra key after those is the charge's receipt, kept for the milliseconds in the last
-- ARGV but one when the charge is admitted (refund.lua takes it back once).
-- The last ARGV is the chargeback usage ("" for none), see usage.lua: the last keys are its
-- books, moved here so that the books and the quotas can never disagree; Redis's clock must
-- be in the day they name, as in every counter's window.
-- Returns {"clock", now} when Redis's clock is outside a window (the caller's was stale),
-- {"refused", now, used[], refused_indexes[], crossed[]} charging nothing, or
-- {"ok", now, used_after[], crossed[]}.
--
-- Alerts: a counter's level is the highest threshold its usage has reached (used * 100 >=
-- threshold * limit), or 100 when this request is refused by it (the wall). When the level
-- is above the marker, the marker moves up to it (kept as long as the counter) and
-- crossed[] gets {index, marker before, level}: decided here, in the step that moved the
-- usage, so exactly one caller, on one replica, learns of each threshold once per window.
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call("TIME")
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local n = math.floor((#ARGV - 2) / 5)
for i = 1, n do
  local base = (i - 1) * 5 + 1
  if now < tonumber(ARGV[base + 3]) or now >= tonumber(ARGV[base + 4]) then
    return {"clock", tostring(now)}
  end
end
if usage_outside(ARGV[#ARGV], now) then
  return {"clock", tostring(now)}
end

local markers, m = {}, n
for i = 1, n do
  if ARGV[(i - 1) * 5 + 6] ~= "" then
    m = m + 1
    markers[i] = KEYS[m]
  end
end

local function alert(i, used, wall, crossed)
  local base = (i - 1) * 5 + 1
  local level, limit = 0, tonumber(ARGV[base + 2])
  for t in string.gmatch(ARGV[base + 5], "%d+") do
    t = tonumber(t)
    if t > level and used * 100 >= t * limit then
      level = t
    end
  end
  if wall then
    level = 100
  end
  local before = tonumber(redis.call("GET", markers[i]) or "0")
  if level > before then
    redis.call("SET", markers[i], level)
    redis.call("EXPIREAT", markers[i], math.ceil(tonumber(ARGV[base + 4])) + 60)
    crossed[#crossed + 1] = i - 1
    crossed[#crossed + 1] = before
    crossed[#crossed + 1] = level
  end
end

local used, refused, walls, crossed = {}, {}, {}, {}
for i = 1, n do
  local base = (i - 1) * 5 + 1
  local amount = tonumber(ARGV[base + 1])
  used[i] = tonumber(redis.call("GET", KEYS[i]) or "0")
  if amount > 0 and used[i] + amount > tonumber(ARGV[base + 2]) then
    refused[#refused + 1] = i - 1
    walls[i] = true
  end
end
if #refused > 0 then
  for i = 1, n do
    if markers[i] then
      alert(i, used[i], walls[i], crossed)
    end
  end
  return {"refused", tostring(now), used, refused, crossed}
end
for i = 1, n do
  local base = (i - 1) * 5 + 1
  local amount = tonumber(ARGV[base + 1])
  if amount > 0 then
    used[i] = redis.call("INCRBY", KEYS[i], amount)
    -- Kept a minute past the window so that late refunds still land.
    redis.call("EXPIREAT", KEYS[i], math.ceil(tonumber(ARGV[base + 4])) + 60)
  end
  if markers[i] then
    alert(i, used[i], false, crossed)
  end
end
local usage = ARGV[#ARGV]
if #KEYS > m + usage_keys(usage) then
  redis.call("SET", KEYS[m + 1], "1", "PX", ARGV[#ARGV - 1])
end
add_usage(usage, 1)
return {"ok", tostring(now), used, crossed}
