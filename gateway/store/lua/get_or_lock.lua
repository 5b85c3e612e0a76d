-- A miss's lookup and its bid to lead, in one step. KEYS[1]: the entry, KEYS[2]: its lock.
-- ARGV[1]: the caller's token, ARGV[2]: the lock's lifetime in ms.
-- Returns the entry if it exists; else 1 if the lock was free and is now the caller's,
-- 0 if someone else holds it.
local entry = redis.call("GET", KEYS[1])
if entry then
  return entry
end
if redis.call("SET", KEYS[2], ARGV[1], "NX", "PX", ARGV[2]) then
  return 1
end
return 0
