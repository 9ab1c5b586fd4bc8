-- set_waitlist: ARGV 4 '1' (freed seats go to the pool) or '0' (they go back on sale, and
-- the whole pool with them, in this step). Returns {'ok', seats returned to sale}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local released = {}
if ARGV[4] == '1' then
  redis.call('HSET', K_META, 'wl', 1)
else
  redis.call('HDEL', K_META, 'wl')
  released = unpool(redis.call('SMEMBERS', K_POOL))
end
return {'ok', released}
