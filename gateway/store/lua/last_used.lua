-- Record when keys were last used, sampled by each replica: never move a time backwards.
-- KEYS[1]: the hash (key id -> epoch seconds). ARGV: id, time, id, time, ...
for i = 1, #ARGV, 2 do
  local known = tonumber(redis.call("HGET", KEYS[1], ARGV[i]) or "0")
  if tonumber(ARGV[i + 1]) > known then
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return #ARGV / 2
