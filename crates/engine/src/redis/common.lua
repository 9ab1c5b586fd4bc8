-- The prelude of every inventory script; each operation's file follows it (see redis.rs
-- for the key layout). Every key is declared in KEYS and carries the event's hash tag.
-- KEYS: 1 meta, 2 bits, 3 seats, 4 users, 5 holds, 6 expiry, 7 pins, 8 ended, 9 changes,
-- 10 pool, then (the rebuild scripts) 11 the rebuild lock, and last the guard, never touched (redis.rs).
-- ARGV: 1 now in ms ('' = the server's TIME), 2 change stream cap, 3 ms an ended hold is
-- kept; the operation's own arguments start at 4.
local K_META, K_BITS, K_SEATS, K_USERS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_HOLDS, K_EXPIRY, K_PINS, K_ENDED, K_CHANGES = KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
-- The waitlist pool (set of seats, state 'p' in seats, bit 0, counted in meta 'held');
-- meta 'wl' = 1 while freed seats go to it.
local K_POOL = KEYS[10]

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local CAP = tonumber(ARGV[2])
local KEEP_MS = tonumber(ARGV[3])
-- Approximate trimming drops whole stream nodes (100 entries): exact for small caps.
local TRIM = '='
if CAP >= 1000 then TRIM = '~' end

-- The event's version, read by begin() and moved by bump().
local version = 0
-- Records already added at the current version.
local seq = 0

local function err(code, ...)
  return {'e', code, ...}
end

local function loaded()
  return redis.call('HEXISTS', K_META, 'n') == 1
end

-- SETBIT counts bits from the most significant of each byte; the wire layout from the
-- least significant.
local function bit_offset(seat)
  local r = seat % 8
  return seat - r + 7 - r
end

local function user_add(user, n)
  local left = redis.call('HINCRBY', K_USERS, user, n)
  if left <= 0 then
    redis.call('HDEL', K_USERS, user)
  end
end

local function bump()
  version = redis.call('HINCRBY', K_META, 'v', 1)
  seq = 0
end

-- Appends one change record at the current version; its stream id is version-seq.
local function record(kind, reason, seats, nonce, user)
  local fields = {'at', now, 'k', kind, 's', table.concat(seats, ',')}
  if reason then
    fields[#fields + 1] = 'r'
    fields[#fields + 1] = reason
  end
  if nonce then
    fields[#fields + 1] = 'h'
    fields[#fields + 1] = nonce
  end
  if user then
    fields[#fields + 1] = 'u'
    fields[#fields + 1] = user
  end
  redis.call('XADD', K_CHANGES, 'MAXLEN', TRIM, CAP, version .. '-' .. seq, unpack(fields))
  seq = seq + 1
end

local function load_hold(nonce)
  local raw = redis.call('HGET', K_HOLDS, nonce)
  if not raw then
    return nil
  end
  return cmsgpack.unpack(raw)
end

local function save_hold(nonce, h)
  redis.call('HSET', K_HOLDS, nonce, cmsgpack.pack(h))
end

local function view(h)
  return {'ok', h.st, h.u, h.c, h.e, h.s}
end

local function live(h)
  return h and (h.st == 'held' or h.st == 'confirming')
end

local function not_live(h)
  if not h then
    return err('UNKNOWN_HOLD')
  elseif h.st == 'expired' then
    return err('HOLD_EXPIRED')
  elseif h.st == 'released' then
    return err('HOLD_RELEASED')
  elseif h.st == 'confirmed' then
    return err('ALREADY_CONFIRMED')
  end
  return err('UNKNOWN_HOLD')
end

-- Whether seats freed for this reason go to the waitlist pool now.
local function pools(reason)
  return (reason == 'user' or reason == 'expiry' or reason == 'refund')
    and redis.call('HGET', K_META, 'wl') == '1'
end

-- Pool -> AVAILABLE for the given seats that are in the pool, as one change.
local function unpool(seats)
  local released = {}
  for _, s in ipairs(seats) do
    local seat = tonumber(s)
    if redis.call('SREM', K_POOL, seat) == 1 then
      redis.call('HDEL', K_SEATS, seat)
      redis.call('SETBIT', K_BITS, bit_offset(seat), 1)
      released[#released + 1] = seat
    end
  end
  if #released > 0 then
    table.sort(released)
    redis.call('HINCRBY', K_META, 'held', -#released)
    bump()
    record('unpooled', nil, released, nil, nil)
  end
  return released
end

-- Ends a live hold: its seats become available (sold when confirmed; pooled while the
-- waitlist flag is set).
local function end_hold(nonce, h, status, reason)
  local confirmed = status == 'confirmed'
  local pooled = not confirmed and pools(reason)
  for _, s in ipairs(h.s) do
    if confirmed then
      redis.call('HSET', K_SEATS, s, 's' .. h.u)
    elseif pooled then
      redis.call('HSET', K_SEATS, s, 'p')
      redis.call('SADD', K_POOL, s)
    else
      redis.call('HDEL', K_SEATS, s)
      redis.call('SETBIT', K_BITS, bit_offset(s), 1)
    end
  end
  local n = #h.s
  if not pooled then
    redis.call('HINCRBY', K_META, 'held', -n)
  end
  if confirmed then
    redis.call('HINCRBY', K_META, 'sold', n)
  else
    user_add(h.u, -n)
  end
  redis.call('ZREM', K_EXPIRY, nonce)
  redis.call('ZREM', K_PINS, nonce)
  h.st = status
  h.a = nil
  h.d = nil
  save_hold(nonce, h)
  redis.call('ZADD', K_ENDED, now, nonce)
  bump()
  if confirmed then
    record('sold', nil, h.s, nonce, h.u)
  elseif pooled then
    record('pooled', reason, h.s, nonce, h.u)
  else
    record('released', reason, h.s, nonce, h.u)
  end
end

-- Expires every unpinned hold whose time is up (expires_ms <= now).
local function expire_due()
  local due = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', now)
  local expired = 0
  for _, nonce in ipairs(due) do
    local h = load_hold(nonce)
    if h and h.st == 'held' then
      end_hold(nonce, h, 'expired', 'expiry')
      expired = expired + 1
    else
      redis.call('ZREM', K_EXPIRY, nonce)
    end
  end
  return expired
end

-- Forgets ended holds kept long enough, a bounded number per call.
local function prune_ended()
  local old = redis.call('ZRANGEBYSCORE', K_ENDED, '-inf', now - KEEP_MS, 'LIMIT', 0, 256)
  if #old > 0 then
    redis.call('HDEL', K_HOLDS, unpack(old))
    redis.call('ZREM', K_ENDED, unpack(old))
  end
end

-- Every operation starts here: the event must exist; what is due expires first.
local function begin()
  if not loaded() then
    return false
  end
  version = tonumber(redis.call('HGET', K_META, 'v'))
  prune_ended()
  expire_due()
  return true
end

local function counts()
  local m = redis.call('HMGET', K_META, 'v', 'n', 'held', 'sold')
  return tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
end

-- Records after this version are all still in the stream.
local function floor_version()
  local first = redis.call('XRANGE', K_CHANGES, '-', '+', 'COUNT', 1)
  if #first == 0 then
    return version
  end
  local id = first[1][1]
  local dash = string.find(id, '-', 1, true)
  local v = tonumber(string.sub(id, 1, dash - 1))
  if tonumber(string.sub(id, dash + 1)) == 0 then
    return v - 1
  end
  return v
end

