-- release: ARGV 4 nonce.
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
end_hold(nonce, h, 'released', 'user')
return view(h)
