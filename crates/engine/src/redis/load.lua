-- load: ARGV 4 seat count, 5 bitmap, then (seat, user) pairs of sold seats.
-- Initializes the event only when it is absent; returns {'ok', created, seats, epoch}.
if loaded() then
  local m = redis.call('HMGET', K_META, 'n', 'epoch')
  return {'ok', 0, tonumber(m[1]), tonumber(m[2])}
end
-- Leftovers of an earlier life of the event (its meta lost) must not mix with the new.
redis.call('DEL', K_BITS, K_SEATS, K_USERS, K_HOLDS, K_EXPIRY, K_PINS, K_ENDED, K_CHANGES, K_POOL)
local sold = 0
for i = 6, #ARGV, 2 do
  redis.call('HSET', K_SEATS, ARGV[i], 's' .. ARGV[i + 1])
  user_add(ARGV[i + 1], 1)
  sold = sold + 1
end
redis.call('SET', K_BITS, ARGV[5])
redis.call('HSET', K_META, 'n', ARGV[4], 'v', 0, 'held', 0, 'sold', sold, 'epoch', now)
return {'ok', 1, tonumber(ARGV[4]), now}
