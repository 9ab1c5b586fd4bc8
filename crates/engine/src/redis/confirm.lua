-- confirm: ARGV 4 nonce, 5 attempt.
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
end_hold(nonce, h, 'confirmed', nil)
return view(h)
