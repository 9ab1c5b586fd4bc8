-- release_pool: ARGV 4.. seats. Pool -> AVAILABLE for those in the pool.
-- Returns {'ok', seats released}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local seats = {}
for i = 4, #ARGV do
  seats[#seats + 1] = ARGV[i]
end
return {'ok', unpool(seats)}
