-- expire_due: no arguments. Returns {'ok', holds expired}.
if not loaded() then
  return err('UNKNOWN_EVENT')
end
version = tonumber(redis.call('HGET', K_META, 'v'))
prune_ended()
return {'ok', expire_due()}
