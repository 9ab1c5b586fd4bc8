-- ARGV[12] user, ARGV[13] new entry id (16 hex), ARGV[14] pre-queue score.
local user = ARGV[12]
redis.call('HSETNX', STATE, 'refilled', NOW)
open_if_due()
local rec, dead = live(user)
if rec then
  touch(user, rec)
  return view_of(user, rec)
end
if redis.call('ZCARD', LINE) >= MAXLEN then return { 'full' } end
local score
if opened() then
  if redis.call('ZCARD', LINE) == 0 then start_filling() end
  -- Later joins line up behind every pre-queue score (all below 2^52).
  score = 4503599627370496 + redis.call('HINCRBY', STATE, 'seq', 1)
else
  score = tonumber(ARGV[14])
end
redis.call('ZADD', LINE, score, user)
local new = { phase = 'w', id = pack_id(ARGV[13]), deadline = 0 }
if dead then
  new.old = dead.id
  new.old_forget = dead.deadline
end
touch(user, new)
return view_of(user, new)
