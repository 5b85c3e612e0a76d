-- Give back amounts charged earlier (a negative amount tops up). KEYS[i]: counter i;
-- ARGV[i]: amount.
-- A counter that has expired (its window is over) is left alone; none goes below 0.
for i = 1, #KEYS do
  if redis.call("EXISTS", KEYS[i]) == 1 then
    local left = redis.call("DECRBY", KEYS[i], tonumber(ARGV[i]))
    if left < 0 then
      redis.call("SET", KEYS[i], 0, "KEEPTTL")
    end
  end
end
return #KEYS
