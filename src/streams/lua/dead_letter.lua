-- dead_letter: move one entry that was delivered too often from a stream's
-- consumer group to its dead-letter stream, and acknowledge it, atomically:
-- it is either still pending and ends up in the DLQ exactly once, or it was
-- acknowledged meanwhile and nothing happens.
--
-- KEYS[1] the stream
-- KEYS[2] its dead-letter stream, "<stream>:dlq"
-- ARGV[1] consumer group
-- ARGV[2] entry id
-- ARGV[3] reason, for a person
-- ARGV[4] delivery count
-- ARGV[5] approximate MAXLEN of the dead-letter stream
-- ARGV[6..] the entry's fields and values
--
-- Returns 1 if moved, 0 if the entry was no longer pending.

local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 then
  return 0
end
local entry = {'original_id', ARGV[2], 'reason', ARGV[3], 'delivery_count', ARGV[4], 'group', ARGV[1]}
for i = 6, #ARGV do
  entry[#entry + 1] = ARGV[i]
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', unpack(entry))
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
return 1
