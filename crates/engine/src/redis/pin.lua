-- pin: ARGV 4 nonce, 5 attempt, 6 deadline ms.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local nonce = ARGV[4]
local h = load_hold(nonce)
if not live(h) then
  return not_live(h)
end
if h.st == 'confirming' then
  return err('HOLD_CONFIRMING')
end
h.st = 'confirming'
h.a = ARGV[5]
save_hold(nonce, h)
redis.call('ZREM', K_EXPIRY, nonce)
redis.call('ZADD', K_PINS, ARGV[6], nonce)
return view(h)
