-- reject_pending: an operator's decision on a request left pending (by an
-- anomaly, a response gap, an exchange that will never answer): reject it
-- on M, in one atomic step, as apply_response.lua would apply a rejection.
-- CI does not change. The exchange learns it from the record on R: a later
-- delivery of the request is acknowledged and skipped.
--
-- KEYS[1] mirror:credit:req:<request_id>        the request's record
-- KEYS[2] CI:<uid>:<asset>                      Credit Inventory
-- KEYS[3] mirror:credit:inflight:<uid>:<asset>  pending request marker
-- KEYS[4] mirror:credit:events                  credit event log
-- KEYS[5] mirror:credit:undecided               undecided requests (zset)
-- ARGV[1] request_id   ARGV[2] reject reason (bounded)
-- ARGV[3] now, unix milliseconds   ARGV[4] approximate MAXLEN of the event log
-- ARGV[5] how long a decided record is kept, ms
--
-- Returns {"rejected"}, or {"not_pending", <status>} (decided already, or
-- unknown: status ""), writing nothing.

local r = redis.call('HMGET', KEYS[1], 'status', 'uid', 'asset', 'c_change')
if r[1] ~= 'pending' then
  return {'not_pending', r[1] or ''}
end
redis.call('HSET', KEYS[1], 'status', 'rejected', 'reject_reason', ARGV[2], 'decided_ms', ARGV[3],
  'resolved', '1')
local ci = redis.call('HGET', KEYS[2], 'amount') or '0'
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'rejected', 'request_id', ARGV[1],
  'uid', r[2], 'asset', r[3], 'c_change', r[4], 'ci', ci, 'reason', ARGV[2], 'at_ms', ARGV[3])
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {'rejected'}
