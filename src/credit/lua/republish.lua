-- republish: send an undecided request to the exchange again, as a new
-- entry of the request stream carrying the same standard fields, in one
-- atomic step with the record's new entry id and the undecided index. Used
-- when its entry is gone (a foreign trim) and by ResolveCreditAnomaly's
-- redeliver. A request the exchange answered already is answered again
-- from its record there; one it never saw is decided as any other.
--
-- KEYS[1] mirror:credit:req:<request_id>   the request's record
-- KEYS[2] mirror:credit:request            requests to the exchange (std)
-- KEYS[3] mirror:credit:undecided          undecided requests (zset)
-- KEYS[4] mirror:credit:events             credit event log
-- ARGV[1] request_id   ARGV[2] why, for the event
-- ARGV[3] now, unix milliseconds   ARGV[4] approximate MAXLEN of the event log
--
-- Returns {"republished", <new entry id>}, or {"not_pending", <status>} if
-- the request is decided (or unknown: status "").

local r = redis.call('HMGET', KEYS[1], 'status', 'custodian', 'uid', 'timestamp', 'asset',
  'c_change', 'ci', 'chain', 'address', 'ci_version', 'created_ms')
if r[1] ~= 'pending' then
  return {'not_pending', r[1] or ''}
end
local entry = redis.call('XADD', KEYS[2], '*',
  'custodian', r[2], 'request_id', ARGV[1], 'uid', r[3], 'timestamp', r[4],
  'asset', r[5], 'c_change', r[6], 'ci', r[7], 'chain', r[8],
  'address', r[9], 'ci_version', r[10], 'created_ms', r[11], 'v', '1')
redis.call('HSET', KEYS[1], 'entry_id', entry)
redis.call('ZADD', KEYS[3], string.match(entry, '^(%d+)-'), ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'type', 'redelivered',
  'request_id', ARGV[1], 'uid', r[3], 'asset', r[5], 'c_change', r[6], 'ci', r[7],
  'reason', ARGV[2], 'at_ms', ARGV[3])
return {'republished', entry}
