-- apply_response: apply one decision on a credit request to M, exactly once:
-- an exchange response read from R (advancing the WSP's cursor over the
-- response stream), or an operator's rejection (ResolveCreditAnomaly). A
-- request that is a pledge or a release carries a custody effect, applied
-- in the same step: on a pledge, ACTIVE (CI raised) or REJECTED (unlocked);
-- on a release, COMPLETED (CI lowered, pledges unlocked oldest first) or
-- REJECTED (nothing unlocked).
--
-- Money is never computed here. An accepted request sets CI to the `ci`
-- the request carried, which Rust computed exactly; the response's `ci` is
-- passed in canonical form (ARGV[5]) and the request's is canonical too (we
-- wrote it), so string equality is exact decimal equality. A pledge's or
-- release's custody plan was computed exactly when it was requested and is
-- in its record (`custody_base`, `custody_accept`, `custody_reject`: the
-- vault's "locked/pledged"; a release's `plan_remaining`): nothing else
-- moves those amounts while it is pending, and this script checks that
-- (else: an anomaly, nothing applied). Everything copied from the response
-- (the reject reason) was bounded by the caller.
--
-- KEYS[1] mirror:credit:req:<request_id>        the request's record
-- KEYS[2] CI:<uid>:<asset>                      Credit Inventory
-- KEYS[3] mirror:credit:inflight:<uid>:<asset>  pending request marker
-- KEYS[4] mirror:credit:events                  credit event log
-- KEYS[5] mirror:cursor:mirror:credit:response  last response id applied
-- KEYS[6] mirror:credit:assets:<uid>            the user's assets (zset)
-- KEYS[7] mirror:credit:undecided               undecided requests (zset)
-- KEYS[8] mirror:vault:<uid>:<asset>            the user's custody
-- KEYS[9] mirror:pledge:<request_id>            the pledge, if it is one
-- KEYS[10] mirror:release:<request_id>          the release, if it is one
-- KEYS[11] mirror:pledges-active:<uid>:<asset>  active pledges, oldest first
-- KEYS[12] mirror:vault-events                  vault event log
-- (a release also writes mirror:pledge:<id> of each pledge in its plan: the
-- ids come from the plan this gateway stored, never from the response; M
-- is one Redis, not a cluster)
-- ARGV[1] response entry id on R ("" for an operator's decision)
-- ARGV[2] request_id
-- ARGV[3] status as sent: accepted | rejected (else: an anomaly)
-- ARGV[4] reject_reason (bounded)
-- ARGV[5] the response's ci, canonical ("" if not a decimal)
-- ARGV[6] now, unix milliseconds   ARGV[7] approximate MAXLEN of the event logs
-- ARGV[8] the response's uid   ARGV[9] the response's asset
-- ARGV[10] the response's custodian   ARGV[11] this WSP's custodian id
-- ARGV[12] how long a decided record is kept, ms
-- ARGV[13] "response" (from R) or "operator" (no cursor, no checks of a
--          response's fields)
-- ARGV[14] the entry before this one in the same batch ("" for none): a
--          batch is one pipeline of these scripts, and if that entry's
--          script failed (the cursor is not at it yet) this one does
--          nothing ("behind"), so a later entry never moves the cursor past
--          one that was not handled
--
-- Returns one of: "applied"; "duplicate" (this response or a later one was
-- applied already); "unknown" (no such request here: another party's);
-- "final" (the request was decided already: nothing changes); "anomaly"
-- (another uid, asset or custodian, accepted with another ci, an unknown
-- status, CI or custody moved under a pending request: not applied, an anomaly
-- event recorded, the request left pending for a person); "behind" (see
-- ARGV[14]: nothing done). All but "duplicate" and "behind" advance the
-- cursor of a response.
-- Invariants: for every vault, total = locked + available and locked = CI
-- + the amounts of pending pledges; pledged = remaining of active pledges.

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

local from_r = ARGV[13] == 'response'
if from_r then
  local cursor = redis.call('GET', KEYS[5])
  if cursor and not after(ARGV[1], cursor) then
    return 'duplicate'
  end
  if ARGV[14] ~= '' and (not cursor or after(ARGV[14], cursor)) then
    return 'behind'
  end
end
local function advance()
  if from_r then redis.call('SET', KEYS[5], ARGV[1]) end
end

local req = redis.call('HMGET', KEYS[1], 'status', 'ci', 'uid', 'asset', 'c_change', 'purpose',
  'custody_base', 'custody_accept', 'custody_reject', 'ci_version')
if not req[1] then
  advance()
  return 'unknown'
end
if req[1] ~= 'pending' then
  advance()
  return 'final'
end
local purpose = req[6] or ''
local event = {'request_id', ARGV[2], 'uid', req[3], 'asset', req[4], 'c_change', req[5], 'at_ms', ARGV[6]}
local function anomaly(reason)
  advance()
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', 'anomaly', 'ci', req[2],
    'reason', reason, 'response_id', ARGV[1], unpack(event))
  return 'anomaly'
end
local accepted = ARGV[3] == 'accepted'
if from_r then
  if req[3] ~= ARGV[8] or req[4] ~= ARGV[9] then
    return anomaly('response names another uid or asset than its request')
  end
  if ARGV[10] ~= ARGV[11] then
    return anomaly('response names another custodian than this WSP')
  end
  if accepted and ARGV[5] ~= req[2] then
    return anomaly('accepted with a ci other than the request carried')
  end
  if not accepted and ARGV[3] ~= 'rejected' then
    return anomaly('response with an unknown status')
  end
end
-- The request's `ci` is absolute: it was computed from the CI of the
-- version it carries. Nothing else moves CI while a request is pending (a
-- settlement of the pair waits for its decision), so a CI of another
-- version means that broke: applying would overwrite the other change.
if accepted and (redis.call('HGET', KEYS[2], 'version') or '0') ~= (req[10] or '0') then
  return anomaly('Credit Inventory changed while this request was pending: not applied')
end
if purpose ~= '' then
  local v = redis.call('HMGET', KEYS[8], 'locked', 'pledged')
  if (v[1] or '0') .. '/' .. (v[2] or '0') ~= req[7] then
    return anomaly('the vault moved while this ' .. purpose .. ' was pending: not applied')
  end
end

advance()
if accepted then
  redis.call('HSET', KEYS[2], 'amount', req[2], 'updated_ms', ARGV[6], 'last_request_id', ARGV[2])
  redis.call('HINCRBY', KEYS[2], 'version', 1)
  redis.call('ZADD', KEYS[6], 0, req[4])
  redis.call('HSET', KEYS[1], 'status', 'accepted', 'decided_ms', ARGV[6])
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', 'accepted', 'ci', req[2],
    'reason', '', unpack(event))
else
  redis.call('HSET', KEYS[1], 'status', 'rejected', 'reject_reason', ARGV[4], 'decided_ms', ARGV[6])
  if not from_r then
    redis.call('HSET', KEYS[1], 'resolved', '1')
  end
  local ci = redis.call('HGET', KEYS[2], 'amount') or '0'
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[7], '*', 'type', 'rejected', 'ci', ci,
    'reason', ARGV[4], unpack(event))
end
redis.call('DEL', KEYS[3])
redis.call('ZREM', KEYS[7], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[12])

if purpose ~= '' then
  local locked, pledged = string.match(accepted and req[8] or req[9], '^([^/]*)/([^/]*)$')
  redis.call('HSET', KEYS[8], 'locked', locked, 'pledged', pledged, 'updated_ms', ARGV[6])
  local version = redis.call('HINCRBY', KEYS[8], 'version', 1)
  local kind
  if purpose == 'pledge' then
    if accepted then
      redis.call('HSET', KEYS[9], 'status', 'active', 'updated_ms', ARGV[6])
      redis.call('ZADD', KEYS[11], redis.call('HGET', KEYS[9], 'created_ms') or ARGV[6], ARGV[2])
      kind = 'pledge_active'
    else
      redis.call('HSET', KEYS[9], 'status', 'rejected', 'reject_reason', ARGV[4], 'updated_ms', ARGV[6])
      kind = 'pledge_rejected'
    end
  else
    if accepted then
      local plan = redis.call('HMGET', KEYS[10], 'plan_remaining', 'plan_unlocks')
      for _, step in ipairs(cjson.decode(plan[1])) do
        local key = 'mirror:pledge:' .. step[1]
        redis.call('HSET', key, 'remaining', step[2], 'updated_ms', ARGV[6])
        if step[2] == '0' then
          redis.call('HSET', key, 'status', 'released')
          redis.call('ZREM', KEYS[11], step[1])
        end
      end
      redis.call('HSET', KEYS[10], 'status', 'completed', 'unlocks', plan[2], 'updated_ms', ARGV[6])
      kind = 'release_completed'
    else
      redis.call('HSET', KEYS[10], 'status', 'rejected', 'reject_reason', ARGV[4], 'updated_ms', ARGV[6])
      kind = 'release_rejected'
    end
  end
  redis.call('XADD', KEYS[12], 'MAXLEN', '~', ARGV[7], '*', 'type', kind, 'uid', req[3],
    'asset', req[4], 'amount', (string.gsub(req[5], '^[+-]', '')), 'reference_id', ARGV[2],
    'total', redis.call('HGET', KEYS[8], 'total') or '0', 'locked', locked, 'pledged', pledged,
    'version', version, 'at_ms', ARGV[6])
end
return 'applied'
