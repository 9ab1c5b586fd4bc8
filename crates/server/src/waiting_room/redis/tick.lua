-- One admission step, by the lease holder only. ARGV[12] the lease as its holder took it
-- ("node:fence"), ARGV[13] entries swept at most, ARGV[14] admissions at most,
-- ARGV[15] ended entries forgotten at most.
if redis.call('GET', LEASE) ~= ARGV[12] then return { 'fenced' } end
local SWEEP, ADMIT, FORGET = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
redis.call('HSETNX', STATE, 'refilled', NOW)
open_if_due()
local expired = 0

-- Expiry: a slice of the line per step, from a cursor that wraps around.
local cursor = state_num('cursor')
local batch = redis.call('ZRANGE', LINE, cursor, cursor + SWEEP - 1)
local removed = 0
for _, user in ipairs(batch) do
  local rec = parse(redis.call('HGET', bucket_key(user), user))
  if not rec or rec.phase ~= 'w' then
    redis.call('ZREM', LINE, user)
    removed = removed + 1
  else
    local _, gone = settle(user, rec)
    if gone then
      expired = expired + 1
      removed = removed + 1
    end
  end
end
if #batch < SWEEP then cursor = 0 else cursor = cursor + #batch - removed end

-- Admission: a token bucket in thousandths of an admission, full at one second's worth.
local waiting = 0
if opened() then waiting = redis.call('ZCARD', LINE) end
local credit, refilled = state_num('credit'), state_num('refilled')
if waiting == 0 then
  credit = 0
else
  credit = math.min(credit + math.max(NOW - refilled, 0) * RATE, RATE * 1000)
end
refilled = math.max(refilled, NOW)
local admitted = 0
while credit >= 1000 and admitted < ADMIT do
  local front = redis.call('ZPOPMIN', LINE)
  if #front == 0 then break end
  local user = front[1]
  local rec = parse(redis.call('HGET', bucket_key(user), user))
  if rec and rec.phase == 'w' then
    if rec.deadline <= NOW then
      settle(user, rec)
      expired = expired + 1
    else
      rec.phase = 'a'
      rec.deadline = NOW + TTL
      write(user, rec)
      forget_later(user, rec.id, rec.deadline)
      credit = credit - 1000
      admitted = admitted + 1
    end
  end
end
redis.call('HSET', STATE, 'credit', credit, 'refilled', refilled, 'cursor', cursor)

-- Entries that ended: admissions that ran out expire, expired ones are forgotten.
for _ = 1, FORGET do
  local item = redis.call('LINDEX', GONE, 0)
  if not item then break end
  if struct.unpack('>d', item) > NOW then break end
  redis.call('LPOP', GONE)
  local id, user = string.sub(item, 9, 16), string.sub(item, 17)
  local rec = parse(redis.call('HGET', bucket_key(user), user))
  if rec then
    if rec.id == id and rec.phase ~= 'w' then
      settle(user, rec)
    elseif rec.old == id and rec.old_forget <= NOW then
      rec.old = nil
      write(user, rec)
    end
  end
end
return { 'ok', admitted, expired, redis.call('ZCARD', LINE) }
