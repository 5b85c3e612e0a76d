-- Chargeback usage, prepended to charge.lua and refund.lua (one script each, one step).
-- A usage argument is "" (none) or JSON {"keys": k, "add": {field: amount}, "expire_at": t}:
-- the last k KEYS are hashes (a user's and a team's month) that get `sign` * amount per
-- field, never below 0, and are kept until epoch second t (over 13 months of books).
local function usage_keys(usage)
  if usage == "" then
    return 0
  end
  return cjson.decode(usage)["keys"]
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

