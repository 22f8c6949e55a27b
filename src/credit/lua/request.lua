-- request: record a new credit request on M and send it to the exchange, in
-- one atomic step, with its custody effect when it is a pledge (lock part
-- of the vault) or a release (a decrease that unlocks on acceptance). Money
-- is never computed here (Lua numbers are doubles): the caller computes the
-- expected CI and the vault's new locked amount with exact decimals from
-- what it read, and this script writes only if both are still what it read
-- (compare-and-set on versions and amounts); otherwise it answers "stale"
-- and the caller reads again.
--
-- KEYS[1] mirror:credit:req:<request_id>   the request's record (hash)
-- KEYS[2] CI:<uid>:<asset>                 Credit Inventory (hash)
-- KEYS[3] mirror:credit:inflight:<uid>:<asset>  id of the pending request
-- KEYS[4] mirror:credit:request            requests to the exchange (std)
-- KEYS[5] mirror:credit:events             credit event log
-- KEYS[6] mirror:credit:undecided          undecided requests (zset, score
--         = ms of their stream entry): what trimming must keep
-- KEYS[7] mirror:vault:<uid>:<asset>       the user's custody (hash)
-- KEYS[8] mirror:pledge:<id> or mirror:release:<id>  the effect's record
-- KEYS[9] mirror:vault-events             vault event log
-- KEYS[10] mirror:pledges:<uid>            the user's pledges (zset, score
--          = creation ms: ListPledges reads it newest first)
-- ARGV[1] request_id   ARGV[2] uid   ARGV[3] asset
-- ARGV[4] c_change (signed, canonical)   ARGV[5] ci (expected after the change)
-- ARGV[6] chain   ARGV[7] address   ARGV[8] custodian
-- ARGV[9] CI version the caller read ("0" if none)
-- ARGV[10] CI amount the caller read ("" if none)
-- ARGV[11] now, unix seconds   ARGV[12] now, unix milliseconds
-- ARGV[13] approximate MAXLEN of the event logs
-- ARGV[14] purpose: "" (a plain credit request), "pledge" or "release"
-- ARGV[15] vault version the caller read ("0" if none)
-- ARGV[16] the vault's total as read (for the event)
-- ARGV[17] the custody plan (pledge, release; "" for a plain request), as
--          "locked/pledged" strings: the vault right after this request,
--          ARGV[18] after an acceptance, ARGV[19] after a rejection
-- ARGV[20] release: what an acceptance unlocks, JSON [[pledge_id, amount]]
-- ARGV[21] release: each pledge's remaining after, JSON [[pledge_id, amount]]
-- ARGV[22] "1" if a plain request for a (uid, asset) that has a vault is
--          refused (credit of vault users moves only through pledges)
--
-- Returns {"created", <record as {field, value, ...}>, <length of the
-- request stream>}, {"existing", <record>, 0} (same id, same payload:
-- nothing written), or {"stale", {}, 0} (CI or vault changed since the
-- caller read them: nothing written). The length tells the caller when to
-- trim the request stream, which it does by MINID below the oldest
-- undecided request, never by MAXLEN (see CreditStore::trim_requests).
-- Errors: REQUEST_ID_REUSED (same id, other payload or purpose),
-- CREDIT_REQUEST_IN_FLIGHT <id> (this user and asset have one pending),
-- CREDIT_MANAGED_BY_PLEDGES (ARGV[22] and a vault exists).
-- Invariants: at most one pending request per (uid, asset), so the `ci` a
-- request carries and the custody plan stay well defined until it is
-- decided (nothing else moves the vault's locked or pledged amounts; the
-- decision checks that); every undecided request is in KEYS[6] with the
-- entry that carries it; for every vault, locked = CI + the amounts of its
-- pending pledges.

local record = redis.call('HMGET', KEYS[1], 'uid', 'asset', 'c_change', 'chain', 'address', 'purpose')
if record[1] then
  if record[1] == ARGV[2] and record[2] == ARGV[3] and record[3] == ARGV[4]
      and record[4] == ARGV[6] and record[5] == ARGV[7] and (record[6] or '') == ARGV[14] then
    return {'existing', redis.call('HGETALL', KEYS[1]), 0}
  end
  return redis.error_reply('REQUEST_ID_REUSED request_id was used for another request')
end
local pending = redis.call('GET', KEYS[3])
if pending then
  return redis.error_reply('CREDIT_REQUEST_IN_FLIGHT ' .. pending)
end
if ARGV[14] == '' and ARGV[22] == '1' and redis.call('EXISTS', KEYS[7]) == 1 then
  return redis.error_reply('CREDIT_MANAGED_BY_PLEDGES this user has a vault in this asset: its credit moves through PledgeService')
end
local ci = redis.call('HMGET', KEYS[2], 'version', 'amount')
if (ci[1] or '0') ~= ARGV[9] or (ci[2] or '') ~= ARGV[10] then
  return {'stale', {}, 0}
end
if ARGV[14] ~= '' and (redis.call('HGET', KEYS[7], 'version') or '0') ~= ARGV[15] then
  return {'stale', {}, 0}
end

redis.call('HSET', KEYS[1],
  'request_id', ARGV[1], 'uid', ARGV[2], 'asset', ARGV[3], 'c_change', ARGV[4],
  'ci', ARGV[5], 'chain', ARGV[6], 'address', ARGV[7], 'custodian', ARGV[8],
  'ci_version', ARGV[9], 'status', 'pending', 'reject_reason', '',
  'timestamp', ARGV[11], 'created_ms', ARGV[12], 'purpose', ARGV[14],
  'custody_base', ARGV[17], 'custody_accept', ARGV[18], 'custody_reject', ARGV[19])
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

if ARGV[14] ~= '' then
  local locked, pledged = string.match(ARGV[17], '^([^/]*)/([^/]*)$')
  local amount = string.gsub(ARGV[4], '^[+-]', '')
  if ARGV[14] == 'pledge' then
    redis.call('HSET', KEYS[7], 'total', ARGV[16], 'locked', locked, 'pledged', pledged,
      'updated_ms', ARGV[12])
    redis.call('HINCRBY', KEYS[7], 'version', 1)
    redis.call('HSET', KEYS[8], 'pledge_id', ARGV[1], 'uid', ARGV[2], 'asset', ARGV[3],
      'amount', amount, 'remaining', amount, 'status', 'pending', 'credit_request_id', ARGV[1],
      'chain', ARGV[6], 'address', ARGV[7], 'reject_reason', '',
      'created_ms', ARGV[12], 'updated_ms', ARGV[12])
    redis.call('ZADD', KEYS[10], ARGV[12], ARGV[1])
  else
    redis.call('HSET', KEYS[8], 'release_id', ARGV[1], 'uid', ARGV[2], 'asset', ARGV[3],
      'amount', amount, 'status', 'pending', 'credit_request_id', ARGV[1], 'reject_reason', '',
      'unlocks', '', 'plan_unlocks', ARGV[20], 'plan_remaining', ARGV[21],
      'created_ms', ARGV[12], 'updated_ms', ARGV[12])
  end
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[13], '*',
    'type', ARGV[14] .. '_requested', 'uid', ARGV[2], 'asset', ARGV[3], 'amount', amount,
    'reference_id', ARGV[1], 'total', ARGV[16], 'locked', locked, 'pledged', pledged,
    'version', redis.call('HGET', KEYS[7], 'version') or '0', 'at_ms', ARGV[12])
end
return {'created', redis.call('HGETALL', KEYS[1]), redis.call('XLEN', KEYS[4])}
