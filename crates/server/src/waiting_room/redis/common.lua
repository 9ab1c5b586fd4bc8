-- Shared by every waiting-room script of one event (see ../redis.rs for the layout).
-- KEYS: line (zset user -> order), state (hash), lease (string), gone (list), guard (never
-- touched: it keeps scripts from running while the slot migrates on Redis Cluster).
-- ARGV: bucket key base, now ms, admit rate/s, token ttl ms, max length, onsale ms,
-- expired retention ms, heartbeat misses, min/max poll s, pre-queue min poll s, then
-- the script's own arguments from ARGV[12].
local UBASE = ARGV[1]
local NOW = tonumber(ARGV[2])
local RATE = math.max(tonumber(ARGV[3]), 1)
local TTL = tonumber(ARGV[4])
local MAXLEN = tonumber(ARGV[5])
local ONSALE = tonumber(ARGV[6])
local RETENTION = tonumber(ARGV[7])
local MISSES = tonumber(ARGV[8])
local MIN_POLL = tonumber(ARGV[9])
local MAX_POLL = tonumber(ARGV[10])
local PRE_MIN_POLL = tonumber(ARGV[11])
local LINE, STATE, LEASE, GONE = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
-- Must match BUCKETS and bucket_of in redis.rs.
local BUCKETS = 16381

local function bucket_key(user)
  local h = 0
  for i = 1, #user do
    h = (h * 257 + string.byte(user, i)) % BUCKETS
  end
  return UBASE .. h
end

local function clamp(x, lo, hi)
  if x < lo then return lo end
  if x > hi then return hi end
  return x
end

local function pack_id(hex)
  return struct.pack('>I4I4', tonumber(string.sub(hex, 1, 8), 16), tonumber(string.sub(hex, 9, 16), 16))
end

local function id_hex(bytes)
  local hi, lo = struct.unpack('>I4I4', bytes)
  return string.format('%08x%08x', hi, lo)
end

-- A record: phase ('w' in the line, 'a' admitted, 'x' expired), id (8 bytes), deadline
-- (double ms: expiry unless polled, end of admission, or when an expired entry is
-- forgotten), then optionally the previous entry's id and when it is forgotten.
local function parse(v)
  if not v then return nil end
  local r = { phase = string.sub(v, 1, 1), id = string.sub(v, 2, 9), deadline = (struct.unpack('>d', v, 10)) }
  if #v >= 33 then
    r.old = string.sub(v, 18, 25)
    r.old_forget = (struct.unpack('>d', v, 26))
  end
  return r
end

local function write(user, rec)
  local v = rec.phase .. rec.id .. struct.pack('>d', rec.deadline)
  if rec.old then v = v .. rec.old .. struct.pack('>d', rec.old_forget) end
  redis.call('HSET', bucket_key(user), user, v)
end

local function state_num(field)
  return tonumber(redis.call('HGET', STATE, field) or '0')
end

local function opened()
  return redis.call('HGET', STATE, 'opened') == '1'
end

-- The bucket fills only while someone waits: called as the line stops being empty.
local function start_filling()
  redis.call('HSET', STATE, 'credit', 0, 'refilled', math.max(state_num('refilled'), NOW))
end

-- At the onsale the pre-queue, ordered by the random scores drawn at its joins, is the
-- front of the line.
local function open_if_due()
  if NOW < ONSALE or opened() then return end
  start_filling()
  redis.call('HSET', STATE, 'opened', 1)
end

local function forget_later(user, id, at)
  redis.call('RPUSH', GONE, struct.pack('>d', at) .. id .. user)
end

-- Applies a deadline that has passed. Returns the record (nil once forgotten) and
-- whether a pre-queue or waiting entry expired now.
local function settle(user, rec)
  local dirty = false
  if rec.old and rec.old_forget <= NOW then
    rec.old = nil
    dirty = true
  end
  if rec.deadline > NOW then
    if dirty then write(user, rec) end
    return rec, false
  end
  if rec.phase == 'x' then
    redis.call('HDEL', bucket_key(user), user)
    return nil, false
  end
  local was_waiting = rec.phase == 'w'
  if was_waiting then redis.call('ZREM', LINE, user) end
  rec.phase = 'x'
  rec.deadline = NOW + RETENTION
  write(user, rec)
  forget_later(user, rec.id, rec.deadline)
  return rec, was_waiting
end

-- {phase, id, user, position, eta s, poll s, admitted until}; -1 or 0 for none.
local function view_of(user, rec)
  local id = id_hex(rec.id)
  if rec.phase == 'w' then
    if not opened() then
      local until_onsale = math.floor(math.max(ONSALE - NOW, 0) / 1000)
      return { 'p', id, user, 0, -1, clamp(until_onsale, PRE_MIN_POLL, MAX_POLL), -1 }
    end
    local position = redis.call('ZRANK', LINE, user) + 1
    local eta = math.ceil(position / RATE)
    return { 'w', id, user, position, eta, clamp(math.floor(eta / 4), MIN_POLL, MAX_POLL), -1 }
  elseif rec.phase == 'a' then
    return { 'a', id, user, 0, -1, -1, rec.deadline }
  end
  return { 'x', id, user, 0, -1, -1, -1 }
end

-- A poll by the owner: a pre-queue or waiting entry lives for another MISSES intervals.
local function touch(user, rec)
  local poll = view_of(user, rec)[6]
  if poll < 0 then return end
  rec.deadline = NOW + MISSES * poll * 1000
  write(user, rec)
end

-- The user's entry if live (pre-queue, waiting, admitted with time left); else nil and
-- the expired record, if one is still kept.
local function live(user)
  local rec = parse(redis.call('HGET', bucket_key(user), user))
  if not rec then return nil, nil end
  rec = settle(user, rec)
  if rec and (rec.phase == 'w' or rec.phase == 'a') then return rec, nil end
  return nil, rec
end
