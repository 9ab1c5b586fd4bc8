-- release_sold: ARGV 4 reason, 5.. seats. Returns {'ok', seats released}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local released, owners, by_owner = {}, {}, {}
local pooled = pools(ARGV[4])
for i = 5, #ARGV do
  local state = redis.call('HGET', K_SEATS, ARGV[i])
  if state and string.sub(state, 1, 1) == 's' then
    local seat, owner = tonumber(ARGV[i]), string.sub(state, 2)
    if pooled then
      redis.call('HSET', K_SEATS, seat, 'p')
      redis.call('SADD', K_POOL, seat)
      redis.call('HINCRBY', K_META, 'held', 1)
    else
      redis.call('HDEL', K_SEATS, seat)
      redis.call('SETBIT', K_BITS, bit_offset(seat), 1)
    end
    redis.call('HINCRBY', K_META, 'sold', -1)
    user_add(owner, -1)
    released[#released + 1] = seat
    if not by_owner[owner] then
      by_owner[owner] = {}
      owners[#owners + 1] = owner
    end
    table.insert(by_owner[owner], seat)
  end
end
if #released > 0 then
  bump()
  for _, owner in ipairs(owners) do
    record(pooled and 'pooled' or 'released', ARGV[4], by_owner[owner], nil, owner)
  end
end
return {'ok', released}
