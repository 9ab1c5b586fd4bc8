-- begin_rebuild: ARGV 4 lock token, 5 lease ms; KEYS[11] the event's rebuild lock.
-- Returns {'ok', 'present', seats, epoch} when the event's state is there, else takes the
-- lock: {'ok', 'locked'}, or {'ok', 'busy'} while another caller holds it.
if loaded() then
  local m = redis.call('HMGET', K_META, 'n', 'epoch')
  return {'ok', 'present', tonumber(m[1]), tonumber(m[2] or '0')}
end
if redis.call('SET', KEYS[11], ARGV[4], 'NX', 'PX', ARGV[5]) then
  return {'ok', 'locked'}
end
return {'ok', 'busy'}
