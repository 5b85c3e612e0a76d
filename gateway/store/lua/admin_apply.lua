-- One admin write, its audit entry and the news of it, in one step, if nobody wrote first.
-- KEYS: the admin generation counter, the hash written, the audit stream.
-- ARGV: the generation the writer read, the field, its JSON ("" deletes it), the audit
-- entry's JSON, the oldest audit id to keep (ms: 400 days of entries), the change channel.
-- Returns 0 when the generation moved (the writer re-reads and tries again), else
-- {new generation, audit entry id}.
if tonumber(redis.call("GET", KEYS[1]) or "0") ~= tonumber(ARGV[1]) then
  return 0
end
if ARGV[3] == "" then
  redis.call("HDEL", KEYS[2], ARGV[2])
else
  redis.call("HSET", KEYS[2], ARGV[2], ARGV[3])
end
local generation = redis.call("INCR", KEYS[1])
-- "~" trims whole stream nodes only: a little more than 400 days is kept, never less.
local id = redis.call("XADD", KEYS[3], "MINID", "~", ARGV[5], "*", "entry", ARGV[4])
redis.call("PUBLISH", ARGV[6], generation)
return {generation, id}
