-- KEYS: challenges, their expiry. ARGV: user, challenge hex, now ms. Takes the user's
-- challenge if it is this one (used once); 1 when it was still fresh.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
local expires = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[1]))
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if expires > tonumber(ARGV[3]) then return 1 end
return 0
