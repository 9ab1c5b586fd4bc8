-- availability, seat counts, a user's seats and the pick of best available: ARGV 4 '1'
-- to include the bitmap, 5 a user ('' for none).
-- Returns {'ok', version, seats, held, sold, bitmap or '', seats of the user, epoch}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local v, n, held, sold = counts()
local bits = ''
if ARGV[4] == '1' then
  bits = redis.call('GET', K_BITS)
end
local mine = 0
if ARGV[5] ~= '' then
  mine = tonumber(redis.call('HGET', K_USERS, ARGV[5]) or '0')
end
return {'ok', v, n, held, sold, bits, mine, tonumber(redis.call('HGET', K_META, 'epoch') or '0')}
