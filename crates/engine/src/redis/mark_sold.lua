-- mark_sold: ARGV 4.. (seat, user) pairs. A live hold on such a seat is released whole.
-- Returns {'ok', seats changed}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local _, n = counts()
local changed, owners, by_owner = {}, {}, {}
for i = 4, #ARGV, 2 do
  local seat, user = tonumber(ARGV[i]), ARGV[i + 1]
  local state = seat < n and (redis.call('HGET', K_SEATS, seat) or 'a') or 's'
  local kind = string.sub(state, 1, 1)
  if kind ~= 's' then
    if kind == 'h' then
      local nonce = string.sub(state, 2)
      end_hold(nonce, load_hold(nonce), 'released', 'superseded')
    elseif kind == 'p' then
      -- The order is the truth: the seat leaves the pool, and is sold below.
      unpool({seat})
    end
    redis.call('HSET', K_SEATS, seat, 's' .. user)
    redis.call('SETBIT', K_BITS, bit_offset(seat), 0)
    redis.call('HINCRBY', K_META, 'sold', 1)
    user_add(user, 1)
    changed[#changed + 1] = seat
    if not by_owner[user] then
      by_owner[user] = {}
      owners[#owners + 1] = user
    end
    table.insert(by_owner[user], seat)
  end
end
if #changed > 0 then
  bump()
  for _, owner in ipairs(owners) do
    record('sold', nil, by_owner[owner], nil, owner)
  end
end
return {'ok', changed}
