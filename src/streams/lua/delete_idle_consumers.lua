-- delete_idle_consumers: remove consumers of a group that hold nothing
-- pending and have been idle a long time. Check and delete happen in one
-- step, so a consumer that just received an entry is never deleted (which
-- would drop its pending entries from the group).
--
-- KEYS[1] the stream
-- ARGV[1] consumer group
-- ARGV[2] minimum idle time, milliseconds
-- ARGV[3] a consumer never to delete (the caller)
--
-- Returns the number of consumers deleted.

local deleted = 0
for _, consumer in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #consumer, 2 do
    info[consumer[i]] = consumer[i + 1]
  end
  if info['pending'] == 0 and info['idle'] > tonumber(ARGV[2]) and info['name'] ~= ARGV[3] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    deleted = deleted + 1
  end
end
return deleted
