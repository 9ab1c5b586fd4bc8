-- Invariants of one event's queue, for tests: every member of the line has a waiting
-- record and every waiting record is in the line. Returns an error text or 'ok'.
local waiting = 0
for b = 0, BUCKETS - 1 do
  local flat = redis.call('HGETALL', UBASE .. b)
  for i = 1, #flat, 2 do
    local user, rec = flat[i], parse(flat[i + 1])
    if bucket_key(user) ~= UBASE .. b then return 'user ' .. user .. ' in the wrong bucket' end
    if rec.phase == 'w' then
      waiting = waiting + 1
      if not redis.call('ZSCORE', LINE, user) then return 'waiting ' .. user .. ' is not in the line' end
    end
  end
end
local members = redis.call('ZCARD', LINE)
if members ~= waiting then return 'line has ' .. members .. ' members, ' .. waiting .. ' waiting records' end
return 'ok'
