-- Chargeback usage, prepended to charge.lua and refund.lua (one script each, one step).
-- A usage argument is "" (none) or JSON {"keys": k, "add": {field: amount}, "expire_at": t,
-- "within": [start, end] (a charge's only)}: the last k KEYS are hashes (a user's and a
-- team's month and day) that get `sign` * amount per field, never below 0, and are kept
-- until epoch second t (over 13 months of books). A charge books only while `now` is in
-- [start, end), the day those keys name.
local function usage_keys(usage)
  if usage == "" then
    return 0
  end
  return cjson.decode(usage)["keys"]
end

local function usage_outside(usage, now)
  if usage == "" then
    return false
  end
  local within = cjson.decode(usage)["within"]
  return within ~= nil and within ~= cjson.null and (now < within[1] or now >= within[2])
end

local function add_usage(usage, sign)
  if usage == "" then
    return
  end
  local spec = cjson.decode(usage)
  for k = #KEYS - spec["keys"] + 1, #KEYS do
    for field, amount in pairs(spec["add"]) do
      if redis.call("HINCRBY", KEYS[k], field, sign * amount) < 0 then
        redis.call("HSET", KEYS[k], field, 0)
      end
    end
    redis.call("EXPIREAT", KEYS[k], spec["expire_at"])
  end
end

