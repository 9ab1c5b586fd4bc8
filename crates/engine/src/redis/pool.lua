-- pool: no arguments. Returns {'ok', waitlist flag (0/1), pool seats, generation (meta
-- `wlg`, grown by every set of the flag)}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local on = 0
if redis.call('HGET', K_META, 'wl') == '1' then
  on = 1
end
return {'ok', on, redis.call('SMEMBERS', K_POOL), tonumber(redis.call('HGET', K_META, 'wlg')) or 0}
