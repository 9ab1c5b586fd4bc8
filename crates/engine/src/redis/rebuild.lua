-- finish_rebuild: ARGV 4 lock token, 5 seat count, 6 bitmap (sold seats cleared), 7 epoch,
-- 8 version, 9 number of sold seats, then that many (seat, user) pairs, then the pins to
-- restore as (nonce, user, attempt, deadline ms, seats joined by ','); KEYS[11] the
-- event's rebuild lock. Initializes the event only if it is still absent and the lock is
-- still the caller's, then releases the lock.
-- Returns {'ok', initialized, pins restored, pins skipped}.
if redis.call('GET', KEYS[11]) ~= ARGV[4] then
  return err('REBUILD_LOCK_LOST')
end
redis.call('DEL', KEYS[11])
if loaded() then
  return {'ok', 0, 0, 0}
end
-- Whatever survived of the event's keys must not mix with the rebuilt state.
redis.call('DEL', K_BITS, K_SEATS, K_USERS, K_HOLDS, K_EXPIRY, K_PINS, K_ENDED, K_CHANGES, K_POOL)
local n = tonumber(ARGV[5])
local sold = tonumber(ARGV[9])
local i = 10
for _ = 1, sold do
  redis.call('HSET', K_SEATS, ARGV[i], 's' .. ARGV[i + 1])
  user_add(ARGV[i + 1], 1)
  i = i + 2
end
redis.call('SET', K_BITS, ARGV[6])
local held, restored, skipped = 0, 0, 0
while i + 4 <= #ARGV do
  local nonce, user, attempt, deadline = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local seats, seen = {}, {}
  local free = redis.call('HEXISTS', K_HOLDS, nonce) == 0
  for s in string.gmatch(ARGV[i + 4], '[^,]+') do
    local seat = tonumber(s)
    if seat >= n or seen[seat] or redis.call('HEXISTS', K_SEATS, seat) == 1 then
      free = false
    end
    seen[seat] = true
    seats[#seats + 1] = seat
  end
  if free and #seats > 0 then
    for _, s in ipairs(seats) do
      redis.call('HSET', K_SEATS, s, 'h' .. nonce)
      redis.call('SETBIT', K_BITS, bit_offset(s), 0)
    end
    user_add(user, #seats)
    held = held + #seats
    save_hold(nonce, {st = 'confirming', u = user, c = now, e = deadline, s = seats, a = attempt})
    redis.call('ZADD', K_PINS, deadline, nonce)
    restored = restored + 1
  else
    skipped = skipped + 1
  end
  i = i + 5
end
redis.call('HSET', K_META, 'n', n, 'v', ARGV[8], 'held', held, 'sold', sold, 'epoch', ARGV[7])
return {'ok', 1, restored, skipped}
