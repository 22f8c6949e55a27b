-- apply_response: apply one exchange response (read from R) to M, exactly
-- once, and advance the WSP's cursor over the response stream. Money is
-- never computed here: an accepted request sets CI to the `ci` the request
-- carried, which Rust computed exactly. Rust passes the response's `ci` in
-- canonical form (ARGV[5]); the request's is canonical too (we wrote it), so
-- string equality is exact decimal equality. The keys are built from the
-- response's `uid` and `asset`; a response whose uid or asset is not its
-- request's is an anomaly and touches none of them. Everything copied from
-- the response (the reject reason) was bounded by the caller.
--
-- KEYS[1] mirror:credit:req:<request_id>        the request's record
-- KEYS[2] CI:<uid>:<asset>                      Credit Inventory
-- KEYS[3] mirror:credit:inflight:<uid>:<asset>  pending request marker
-- KEYS[4] mirror:credit:events                  credit event log
-- KEYS[5] mirror:cursor:mirror:credit:response  last response id applied
-- KEYS[6] mirror:credit:assets:<uid>            the user's assets (zset)
-- KEYS[7] mirror:credit:undecided               undecided requests (zset)
-- ARGV[1] response entry id on R   ARGV[2] request_id
-- ARGV[3] status as sent: accepted | rejected (else: an anomaly)
-- ARGV[4] reject_reason (bounded)
-- ARGV[5] the response's ci, canonical ("" if not a decimal)
-- ARGV[6] now, unix milliseconds   ARGV[7] approximate MAXLEN of the event log
-- ARGV[8] the response's uid   ARGV[9] the response's asset
-- ARGV[10] the response's custodian   ARGV[11] this WSP's custodian id
-- ARGV[12] how long a decided record is kept, ms
--
-- Returns one of: "applied", "duplicate" (this response or a later one was
-- applied already), "unknown" (no such request here: another party's),
-- "final" (the request was decided already: nothing changes), "anomaly"
-- (another uid, asset or custodian, accepted with another ci, or an unknown
-- status: not applied, an anomaly event recorded, the request left pending
-- for a person). Every outcome but "duplicate" advances the cursor.

-- Stream ids "<ms>-<seq>" compared exactly: each part as a string of
-- digits (Redis writes them without leading zeros), by length and then by
-- value. Lua numbers are doubles: as numbers, ids past 2^53 compare equal.
local function digits_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then return digits_gt(am, bm) end
  return digits_gt(as, bs)
end

local cursor = redis.call('GET', KEYS[5])
if cursor and not after(ARGV[1], cursor) then
  return 'duplicate'
end
redis.call('SET', KEYS[5], ARGV[1])

local req = redis.call('HMGET', KEYS[1], 'status', 'ci', 'uid', 'asset', 'c_change')
if not req[1] then
  return 'unknown'
end
if req[1] ~= 'pending' then
  return 'final'
end
local event = {'request_id', ARGV[2], 'uid', req[3], 'asset', req[4], 'c_change', req[5], 'at_ms', ARGV[6]}
local function anomaly(reason)
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', 'anomaly', 'ci', req[2],
    'reason', reason, 'response_id', ARGV[1], unpack(event))
  return 'anomaly'
end
if req[3] ~= ARGV[8] or req[4] ~= ARGV[9] then
  return anomaly('response names another uid or asset than its request')
end
if ARGV[10] ~= ARGV[11] then
  return anomaly('response names another custodian than this WSP')
end

if ARGV[3] == 'accepted' then
  if ARGV[5] ~= req[2] then
    return anomaly('accepted with a ci other than the request carried')
  end
  redis.call('HSET', KEYS[2], 'amount', req[2], 'updated_ms', ARGV[6], 'last_request_id', ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'version', 1)
  redis.call('ZADD', KEYS[6], 0, req[4])
  redis.call('HSET', KEYS[1], 'status', 'accepted', 'decided_ms', ARGV[6])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', 'accepted', 'ci', req[2],
    'reason', '', unpack(event))
elseif ARGV[3] == 'rejected' then
  redis.call('HSET', KEYS[1], 'status', 'rejected', 'reject_reason', ARGV[4], 'decided_ms', ARGV[6])
  local ci = redis.call('HGET', KEYS[2], 'amount') or '0'
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', 'rejected', 'ci', ci,
    'reason', ARGV[4], unpack(event))
else
  return anomaly('response with an unknown status')
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[7], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[12])
return 'applied'
