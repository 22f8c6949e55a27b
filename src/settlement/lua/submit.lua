-- submit: publish an exchange's settlement report on R (the standard entry
-- on mirror:settlement:individual:response) with this exchange's record of
-- it, in one atomic step. Idempotent on report_id: the same report again
-- publishes nothing and returns the first publication; another report
-- under the id is refused. A closing cycle takes no report.
--
-- The record lives on R only: a full resync of R wipes it with the entry,
-- and then the caller, finding neither it nor the WSP's record (which
-- replicates from M), publishes again. The report stream is trimmed, past
-- ARGV[7] entries, only below the WSP's cursor (which replicates from M):
-- reports the WSP has not read are never trimmed.
--
-- Runs as the `exchange` ACL user (deploy/redis/acl/replica.acl).
--
-- KEYS[1] mirror:settlement:submitted:<report_id>   this exchange's record
-- KEYS[2] mirror:settlement:individual:response     reports (std)
-- KEYS[3] mirror:settlement:closing:<cycle_id>      set while closing
-- KEYS[4] mirror:settlement:submitted-cycle:<cycle_id>  reports published
--         in the cycle (zset)
-- KEYS[5] mirror:cursor:mirror:settlement:individual:response  the WSP's
--         cursor (from M)
-- ARGV[1] report_id   ARGV[2] digest   ARGV[3] mode: "new", or "replace"
--         (the WSP refused what was published: publish the correction)
-- ARGV[4] salt   ARGV[5] how long the record is kept, ms
-- ARGV[6] now, unix ms   ARGV[7] length past which the stream is trimmed
-- ARGV[8..] the entry's fields, name and value
--
-- Returns {"created" | "existing", salt, entry id, published ms}. Errors:
-- REPORT_ID_REUSED (another report under the id), CYCLE_CLOSED.

local rec = redis.call('HMGET', KEYS[1], 'digest', 'salt', 'entry_id', 'submitted_ms')
if rec[1] and ARGV[3] ~= 'replace' then
  if rec[1] == ARGV[2] then
    return {'existing', rec[2], rec[3], rec[4]}
  end
  return redis.error_reply('REPORT_ID_REUSED report_id was used for another report')
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return redis.error_reply('CYCLE_CLOSED the cycle is closing: it takes no more reports')
end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
local entry = redis.call('XADD', KEYS[2], '*', unpack(fields))
if redis.call('XLEN', KEYS[2]) > tonumber(ARGV[7]) then
  local cursor = redis.call('GET', KEYS[5])
  if cursor then
    redis.call('XTRIM', KEYS[2], 'MINID', '~', cursor)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', ARGV[2], 'salt', ARGV[4], 'entry_id', entry,
  'submitted_ms', ARGV[6], 'fields', cjson.encode(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('PEXPIRE', KEYS[4], ARGV[5])
return {'created', ARGV[4], entry, ARGV[6]}
