-- sold_seats: no arguments. Returns {'ok', sold seats (unordered)}.
if not loaded() then
  return err('UNKNOWN_EVENT')
end
local out = {}
local all = redis.call('HGETALL', K_SEATS)
for i = 1, #all, 2 do
  if string.sub(all[i + 1], 1, 1) == 's' then
    out[#out + 1] = tonumber(all[i])
  end
end
return {'ok', out}
