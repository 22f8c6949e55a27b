-- respond: record the exchange's decision on a delivered credit request, on
-- the exchange's replica (R), in one atomic step: the standard response on
-- mirror:credit:response, the answer in this exchange's record, and the XACK
-- of the delivery. Idempotent: the same decision again changes nothing and
-- returns the recorded answer; the other decision is refused.
--
-- The response stream is trimmed, past `ARGV[6]` entries, only below the
-- WSP's cursor (which replicates from M): responses the WSP has not
-- applied are never trimmed. With no cursor yet nothing is trimmed.
--
-- Runs as the `exchange` ACL user (deploy/redis/acl/replica.acl).
--
-- KEYS[1] mirror:credit:answer:<request_id>  written by deliver.lua
-- KEYS[2] mirror:credit:response             responses to the WSP (std)
-- KEYS[3] mirror:credit:request              the request stream (for XACK)
-- KEYS[4] mirror:cursor:mirror:credit:response  the WSP's cursor (from M)
-- ARGV[1] request_id   ARGV[2] status: accepted | rejected
-- ARGV[3] reject_reason ("" on accept)
-- ARGV[4] now, unix seconds   ARGV[5] now, unix milliseconds
-- ARGV[6] length of the response stream past which it is trimmed
-- ARGV[7] retention of the record once answered, ms
--
-- Returns {status, reject_reason, ci, decided_ms} as recorded. Errors:
-- UNKNOWN_REQUEST (never delivered here, or its record expired),
-- ALREADY_ANSWERED <status> (answered before with the other decision).

local a = redis.call('HMGET', KEYS[1], 'uid', 'status', 'reject_reason', 'ci', 'decided_ms',
  'asset', 'c_change', 'custodian', 'entry_id', 'group')
if not a[1] then
  return redis.error_reply('UNKNOWN_REQUEST no such credit request was delivered here')
end
if a[2] then
  if a[2] ~= ARGV[2] then
    return redis.error_reply('ALREADY_ANSWERED ' .. a[2])
  end
  return {a[2], a[3], a[4], a[5]}
end
-- Field order as in the protocol page; `ci` is the request's value, which
-- on accept is the new CI and on reject the requested value echoed.
redis.call('XADD', KEYS[2], '*',
  'custodian', a[8], 'request_id', ARGV[1], 'uid', a[1], 'asset', a[6],
  'c_change', a[7], 'timestamp', ARGV[4], 'ci', a[4], 'status', ARGV[2],
  'reject_reason', ARGV[3])
if redis.call('XLEN', KEYS[2]) > tonumber(ARGV[6]) then
  local cursor = redis.call('GET', KEYS[4])
  if cursor then
    redis.call('XTRIM', KEYS[2], 'MINID', '~', cursor)
  end
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'reject_reason', ARGV[3], 'decided_ms', ARGV[5],
  'decided_s', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('XACK', KEYS[3], a[10], a[9])
return {ARGV[2], ARGV[3], a[4], ARGV[5]}
