-- delete_consumer: remove one consumer of a group if it holds no pending
-- entries (check and delete in one step: deleting a consumer drops its
-- pending entries from the group, which would lose them).
--
-- KEYS[1] the stream
-- ARGV[1] consumer group
-- ARGV[2] the consumer
--
-- Returns 1 if it holds nothing (now deleted, or absent), 0 if it holds
-- entries (kept, for a reconnect with its name or a reclaim).

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending > 0 then
  return 0
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
