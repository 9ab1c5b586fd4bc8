-- ARGV[12] caller, ARGV[13] entry id (16 hex), ARGV[14] the id's bucket.
open_if_due()
local caller, want = ARGV[12], pack_id(ARGV[13])
local user, rec
local own = parse(redis.call('HGET', bucket_key(caller), caller))
if own and (own.id == want or own.old == want) then
  user, rec = caller, own
else
  -- Someone else's entry: its id names its bucket.
  local flat = redis.call('HGETALL', UBASE .. ARGV[14])
  for i = 1, #flat, 2 do
    local r = parse(flat[i + 1])
    if r.id == want or r.old == want then
      user, rec = flat[i], r
      break
    end
  end
end
if not rec then return { 'unknown' } end
if rec.id ~= want then
  -- An earlier entry of the user: expired, readable until its retention ends.
  if rec.old_forget > NOW then return { 'x', ARGV[13], user, 0, -1, -1, -1 } end
  return { 'unknown' }
end
rec = settle(user, rec)
if not rec then return { 'unknown' } end
if user == caller then touch(user, rec) end
return view_of(user, rec)
