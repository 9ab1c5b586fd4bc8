-- The drainer's lease of one event. KEYS: lease, state. ARGV: node id (no ':'), lease ms.
-- KEYS[3], the guard, is never touched (it keeps the script off a migrating slot).
-- The holder renews it; when it is absent anyone takes it with the next fencing token.
-- Returns "node:fence", or nil when another node holds it.
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, ':', 1, true)
  if string.sub(v, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return v
  end
  return false
end
local fence = redis.call('HINCRBY', KEYS[2], 'fence', 1)
v = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
return v
