-- check_invariants: everything of the event, read at once, changing nothing.
-- Returns {'ok', version, seats, held, sold, bitmap, seat states, users, holds, expiry, pins,
-- pool}.
if not loaded() then
  return err('UNKNOWN_EVENT')
end
local v, n, held, sold = counts()
local holds = {}
local all = redis.call('HGETALL', K_HOLDS)
for i = 1, #all, 2 do
  local h = cmsgpack.unpack(all[i + 1])
  holds[#holds + 1] = {all[i], h.st, h.u, h.e, h.s}
end
return {
  'ok', v, n, held, sold, redis.call('GET', K_BITS), redis.call('HGETALL', K_SEATS),
  redis.call('HGETALL', K_USERS), holds, redis.call('ZRANGE', K_EXPIRY, 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', K_PINS, 0, -1), redis.call('SMEMBERS', K_POOL)
}
