-- stale_pins: no arguments. Returns {'ok', nonce, attempt, nonce, attempt, ...} of the
-- pins whose deadline is before now.
if not loaded() then
  return err('UNKNOWN_EVENT')
end
local out = {'ok'}
for _, nonce in ipairs(redis.call('ZRANGEBYSCORE', K_PINS, '-inf', '(' .. now)) do
  local h = load_hold(nonce)
  if h and h.st == 'confirming' then
    out[#out + 1] = nonce
    out[#out + 1] = h.a
  end
end
return out
