-- offer: ARGV 4 nonce, 5 user, 6 ttl ms, 7 seat limit of the user, 8.. seats. Moves the
-- seats from the waitlist pool into a new hold of the user, all or nothing: a seat not in
-- the pool (offered meanwhile, maybe by another node) refuses the whole offer.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local nonce, user = ARGV[4], ARGV[5]
local ttl, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local _, n = counts()
local seats, seen, missing = {}, {}, {}
for i = 8, #ARGV do
  local s = tonumber(ARGV[i])
  if s >= n then
    return err('BAD_SEAT', s)
  end
  if seen[s] then
    return err('DUPLICATE_SEAT')
  end
  seen[s] = true
  seats[#seats + 1] = s
  if redis.call('SISMEMBER', K_POOL, s) == 0 then
    missing[#missing + 1] = s
  end
end
if #seats == 0 then
  return err('NOT_ENOUGH_SEATS')
end
if #missing > 0 then
  return err('SEATS_UNAVAILABLE', missing)
end
local current = tonumber(redis.call('HGET', K_USERS, user) or '0')
if current + #seats > limit then
  return err('USER_LIMIT', current, #seats, limit)
end
if redis.call('HEXISTS', K_HOLDS, nonce) == 1 then
  return err('HOLD_ID_TAKEN')
end
-- Pool seats are already unavailable and counted in 'held': only their owner changes.
for _, s in ipairs(seats) do
  redis.call('SREM', K_POOL, s)
  redis.call('HSET', K_SEATS, s, 'h' .. nonce)
end
user_add(user, #seats)
local h = {st = 'held', u = user, c = now, e = now + ttl, s = seats}
save_hold(nonce, h)
redis.call('ZADD', K_EXPIRY, h.e, nonce)
bump()
record('offered', nil, seats, nonce, user)
return view(h)
