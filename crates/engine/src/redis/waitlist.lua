-- set_waitlist: ARGV 4 '1' (freed seats go to the pool) or '0' (they go back on sale, and
-- the whole pool with them, in this step); ARGV 5, when not empty, the generation the
-- caller read (meta `wlg`, grown by every set): the clear is refused if a set came since,
-- or within ARGV 6 ms before now (meta `wlgu`: until when a clear is refused, the time a
-- joining node has to insert its entry). Returns {'ok', seats returned to sale, 1 if
-- refused else 0}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local released = {}
if ARGV[4] == '1' then
  redis.call('HSET', K_META, 'wl', 1, 'wlgu', now + (tonumber(ARGV[6]) or 0))
  redis.call('HINCRBY', K_META, 'wlg', 1)
else
  if ARGV[5] ~= nil and ARGV[5] ~= '' then
    local generation = tonumber(redis.call('HGET', K_META, 'wlg')) or 0
    local guard = tonumber(redis.call('HGET', K_META, 'wlgu')) or 0
    if generation ~= tonumber(ARGV[5]) or now < guard then
      return {'ok', released, 1}
    end
  end
  redis.call('HDEL', K_META, 'wl')
  released = unpool(redis.call('SMEMBERS', K_POOL))
end
return {'ok', released, 0}
