-- Give back amounts charged earlier (a negative amount tops up). KEYS[i]: counter i;
-- ARGV[i]: amount. The last ARGV is the chargeback usage ("" for none), see usage.lua: the
-- last keys are its books, given back in the same step as the counters.
-- A counter that has expired (its window is over) is left alone; none goes below 0.
-- An extra last key is the charge's receipt: nothing is given back unless it is still
-- there, and it goes, so that a refund retried after a lost reply applies once.
local n = #ARGV - 1
local usage = ARGV[#ARGV]
if #KEYS > n + usage_keys(usage) and redis.call("DEL", KEYS[n + 1]) == 0 then
  return 0
end
for i = 1, n do
  if redis.call("EXISTS", KEYS[i]) == 1 then
    local left = redis.call("DECRBY", KEYS[i], tonumber(ARGV[i]))
    if left < 0 then
      redis.call("SET", KEYS[i], 0, "KEEPTTL")
    end
  end
end
add_usage(usage, -1)
return n
