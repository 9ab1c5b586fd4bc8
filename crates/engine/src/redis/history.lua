-- history: ARGV 4 after this version, 5 at least this many records (never splitting a
-- version). Returns {'ok', complete, records}.
if not begin() then
  return err('UNKNOWN_EVENT')
end
local after, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local complete = 1
if after < floor_version() then
  complete = 0
end
local records = {}
if after < version then
  records = redis.call('XRANGE', K_CHANGES, (after + 1) .. '-0', '+', 'COUNT', limit)
  if #records >= limit and #records > 0 then
    local last = records[#records][1]
    local v = string.sub(last, 1, string.find(last, '-', 1, true) - 1)
    local rest = redis.call('XRANGE', K_CHANGES, '(' .. last, v)
    for _, r in ipairs(rest) do
      records[#records + 1] = r
    end
  end
end
return {'ok', complete, records}
