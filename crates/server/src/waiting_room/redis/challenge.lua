-- KEYS: challenges (hash user -> hex), their expiry (zset user -> ms). ARGV: user,
-- challenge hex, expires ms, now ms, most outstanding. 1 issued, 0 too many.
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 100)
for _, user in ipairs(due) do
  redis.call('HDEL', KEYS[1], user)
  redis.call('ZREM', KEYS[2], user)
end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
