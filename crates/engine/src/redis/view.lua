-- hold_view: ARGV 4 nonce.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local h = load_hold(ARGV[4])
if not h then
  return err('UNKNOWN_HOLD')
end
return view(h)
