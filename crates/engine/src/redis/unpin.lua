-- unpin: ARGV 4 nonce, 5 attempt.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local nonce = ARGV[4]
local h = load_hold(nonce)
if not live(h) then
  return not_live(h)
end
if h.st ~= 'confirming' or h.a ~= ARGV[5] then
  return err('NOT_PINNED')
end
h.st = 'held'
h.a = nil
redis.call('ZREM', K_PINS, nonce)
if h.e <= now then
  end_hold(nonce, h, 'expired', 'expiry')
else
  save_hold(nonce, h)
  redis.call('ZADD', K_EXPIRY, h.e, nonce)
end
return view(h)
