-- hold: ARGV 4 nonce, 5 user, 6 ttl ms, 7 seat limit of the user, 8 k = number of seats,
-- 9..8+k seats, then the orphan-seat rule's checks (none when the rule is off) as pairs
-- `seat, beyond` (`SeatMap::strand_checks`, computed by the node from the event's
-- immutable seat map, which knows rows and aisles): the hold strands `seat` when it is
-- available and `beyond` is taken, or is -1 (a row end, an aisle or a seat of the hold).
if not begin() then
  return err('UNKNOWN_EVENT')
end
local nonce, user = ARGV[4], ARGV[5]
local ttl, limit = tonumber(ARGV[6]), tonumber(ARGV[7])
local k = tonumber(ARGV[8])
local seats = {}
for i = 9, 8 + k do
  seats[#seats + 1] = tonumber(ARGV[i])
end
local current = tonumber(redis.call('HGET', K_USERS, user) or '0')
if current + #seats > limit then
  return err('USER_LIMIT', current, #seats, limit)
end
local _, n = counts()
local seen, unavailable = {}, {}
for _, s in ipairs(seats) do
  if s >= n then
    return err('BAD_SEAT', s)
  end
  if seen[s] then
    return err('DUPLICATE_SEAT')
  end
  seen[s] = true
  if redis.call('GETBIT', K_BITS, bit_offset(s)) == 0 then
    unavailable[#unavailable + 1] = s
  end
end
if #unavailable > 0 then
  return err('SEATS_UNAVAILABLE', unavailable)
end
if #seats == 0 then
  return err('NOT_ENOUGH_SEATS')
end
local stranded = {}
for i = 9 + k, #ARGV - 1, 2 do
  local s, beyond = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if redis.call('GETBIT', K_BITS, bit_offset(s)) == 1
    and (beyond < 0 or redis.call('GETBIT', K_BITS, bit_offset(beyond)) == 0) then
    stranded[#stranded + 1] = s
  end
end
if #stranded > 0 then
  return err('ORPHAN_SEAT', stranded)
end
if redis.call('HEXISTS', K_HOLDS, nonce) == 1 then
  return err('HOLD_ID_TAKEN')
end
for _, s in ipairs(seats) do
  redis.call('HSET', K_SEATS, s, 'h' .. nonce)
  redis.call('SETBIT', K_BITS, bit_offset(s), 0)
end
user_add(user, #seats)
redis.call('HINCRBY', K_META, 'held', #seats)
local h = {st = 'held', u = user, c = now, e = now + ttl, s = seats}
save_hold(nonce, h)
redis.call('ZADD', K_EXPIRY, h.e, nonce)
bump()
record('held', nil, seats, nonce, user)
return view(h)
