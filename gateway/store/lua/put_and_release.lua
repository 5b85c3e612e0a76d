-- A leader's last step: store the entry, then drop the lock if the caller still holds it.
-- KEYS[1]: the entry, KEYS[2]: its lock. ARGV[1]: the value, ARGV[2]: its TTL in seconds,
-- ARGV[3]: the caller's token.
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
if redis.call("GET", KEYS[2]) == ARGV[3] then
  redis.call("DEL", KEYS[2])
end
return 1
