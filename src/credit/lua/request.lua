-- request: record a new credit request on M and send it to the exchange, in
-- one atomic step. Money is never computed here (Lua numbers are doubles):
-- the caller computes the expected CI with exact decimals from the CI it
-- read, and this script writes only if that CI is still the current one
-- (compare-and-set on version and amount); otherwise it answers "stale" and
-- the caller reads again.
--
-- KEYS[1] mirror:credit:req:<request_id>   the request's record (hash)
-- KEYS[2] CI:<uid>:<asset>                 Credit Inventory (hash)
-- KEYS[3] mirror:credit:inflight:<uid>:<asset>  id of the pending request
-- KEYS[4] mirror:credit:request            requests to the exchange (std)
-- KEYS[5] mirror:credit:events             credit event log
-- KEYS[6] mirror:credit:undecided          undecided requests (zset, score
--         = ms of their stream entry): what trimming must keep
-- ARGV[1] request_id   ARGV[2] uid   ARGV[3] asset
-- ARGV[4] c_change (signed, canonical)   ARGV[5] ci (expected after the change)
-- ARGV[6] chain   ARGV[7] address   ARGV[8] custodian
-- ARGV[9] CI version the caller read ("0" if none)
-- ARGV[10] CI amount the caller read ("" if none)
-- ARGV[11] now, unix seconds   ARGV[12] now, unix milliseconds
-- ARGV[13] approximate MAXLEN of the event log
--
-- Returns {"created", <record as {field, value, ...}>, <length of the
-- request stream>}, {"existing", <record>, 0} (same id, same payload:
-- nothing written), or {"stale", {}, 0} (CI changed since the caller read
-- it: nothing written). The record comes back so the caller needs no second
-- round trip; the length tells it when to trim the request stream, which it
-- does by MINID below the oldest undecided request, never by MAXLEN (see
-- CreditStore::trim_requests). Errors: REQUEST_ID_REUSED (same id, other
-- payload), CREDIT_REQUEST_IN_FLIGHT <id> (this user and asset have one
-- pending).
-- Invariant: at most one pending request per (uid, asset), so the `ci` a
-- request carries stays well defined until it is decided; every undecided
-- request is in KEYS[6] with the entry that carries it.

local record = redis.call('HMGET', KEYS[1], 'uid', 'asset', 'c_change', 'chain', 'address')
if record[1] then
  if record[1] == ARGV[2] and record[2] == ARGV[3] and record[3] == ARGV[4]
      and record[4] == ARGV[6] and record[5] == ARGV[7] then
    return {'existing', redis.call('HGETALL', KEYS[1]), 0}
  end
  return redis.error_reply('REQUEST_ID_REUSED request_id was used for another request')
end
local pending = redis.call('GET', KEYS[3])
if pending then
  return redis.error_reply('CREDIT_REQUEST_IN_FLIGHT ' .. pending)
end
local ci = redis.call('HMGET', KEYS[2], 'version', 'amount')
if (ci[1] or '0') ~= ARGV[9] or (ci[2] or '') ~= ARGV[10] then
  return {'stale', {}, 0}
end

redis.call('HSET', KEYS[1],
  'request_id', ARGV[1], 'uid', ARGV[2], 'asset', ARGV[3], 'c_change', ARGV[4],
  'ci', ARGV[5], 'chain', ARGV[6], 'address', ARGV[7], 'custodian', ARGV[8],
  'ci_version', ARGV[9], 'status', 'pending', 'reject_reason', '',
  'timestamp', ARGV[11], 'created_ms', ARGV[12])
redis.call('SET', KEYS[3], ARGV[1])
local entry = redis.call('XADD', KEYS[4], '*',
  'custodian', ARGV[8], 'request_id', ARGV[1], 'uid', ARGV[2], 'timestamp', ARGV[11],
  'asset', ARGV[3], 'c_change', ARGV[4], 'ci', ARGV[5], 'chain', ARGV[6],
  'address', ARGV[7], 'ci_version', ARGV[9], 'created_ms', ARGV[12], 'v', '1')
redis.call('HSET', KEYS[1], 'entry_id', entry)
redis.call('ZADD', KEYS[6], string.match(entry, '^(%d+)-'), ARGV[1])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[13], '*',
  'type', 'requested', 'request_id', ARGV[1], 'uid', ARGV[2], 'asset', ARGV[3],
  'c_change', ARGV[4], 'ci', ARGV[5], 'reason', '', 'at_ms', ARGV[12])
return {'created', redis.call('HGETALL', KEYS[1]), redis.call('XLEN', KEYS[4])}
