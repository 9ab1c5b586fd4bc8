-- feed: ARGV 4 the version the reader has.
-- Returns {'ok', version, seats, held, sold, bitmap, covered, records after it, epoch}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local v, n, held, sold = counts()
local since = tonumber(ARGV[4])
local covered, records = 0, {}
if since <= v and since >= floor_version() then
  covered = 1
  if since < v then
    records = redis.call('XRANGE', K_CHANGES, (since + 1) .. '-0', '+')
  end
end
local epoch = tonumber(redis.call('HGET', K_META, 'epoch') or '0')
return {'ok', v, n, held, sold, redis.call('GET', K_BITS), covered, records, epoch}
