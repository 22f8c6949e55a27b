-- vault_op: record a deposit (custody arrives) or a withdrawal (custody
-- leaves, from the available balance only) in a user's vault, in one
-- atomic step with its idempotency record and its event. Money is never
-- computed here: the caller computes the new total exactly from the vault
-- it read, and this script writes only if the vault is still at that
-- version ("stale" otherwise: the caller reads again).
--
-- KEYS[1] mirror:vault-op:<request_id>   the operation's record
-- KEYS[2] mirror:vault:<uid>:<asset>     the vault
-- KEYS[3] mirror:vault-events            vault event log
-- ARGV[1] request_id   ARGV[2] kind: deposit | withdrawal
-- ARGV[3] uid   ARGV[4] asset   ARGV[5] amount (canonical, positive)
-- ARGV[6] chain   ARGV[7] address   ARGV[8] tx_id
-- ARGV[9] the vault version the caller read ("0" if none)
-- ARGV[10] the vault's total after the operation
-- ARGV[11] the vault's locked and pledged as read, "locked/pledged"
-- ARGV[12] now, unix milliseconds   ARGV[13] approximate MAXLEN of the event log
--
-- Returns {"created", <record>} or {"existing", <record>} (same id, same
-- payload: nothing written; the record holds the balance right after the
-- first call), or {"stale", {}}. Error REQUEST_ID_REUSED if the id was
-- used for another operation.
-- Invariant: total = locked + available with available >= 0 (a
-- withdrawal's total after is never below locked: the caller checked it
-- against what it read, and the version check makes that still true).

local op = redis.call('HMGET', KEYS[1], 'kind', 'uid', 'asset', 'amount', 'chain', 'address', 'tx_id')
if op[1] then
  if op[1] == ARGV[2] and op[2] == ARGV[3] and op[3] == ARGV[4] and op[4] == ARGV[5]
      and op[5] == ARGV[6] and op[6] == ARGV[7] and op[7] == ARGV[8] then
    return {'existing', redis.call('HGETALL', KEYS[1])}
  end
  return redis.error_reply('REQUEST_ID_REUSED request_id was used for another operation')
end
if (redis.call('HGET', KEYS[2], 'version') or '0') ~= ARGV[9] then
  return {'stale', {}}
end
local locked, pledged = string.match(ARGV[11], '^([^/]*)/([^/]*)$')
redis.call('HSET', KEYS[2], 'total', ARGV[10], 'locked', locked, 'pledged', pledged,
  'updated_ms', ARGV[12])
local version = redis.call('HINCRBY', KEYS[2], 'version', 1)
redis.call('HSET', KEYS[1], 'request_id', ARGV[1], 'kind', ARGV[2], 'uid', ARGV[3],
  'asset', ARGV[4], 'amount', ARGV[5], 'chain', ARGV[6], 'address', ARGV[7], 'tx_id', ARGV[8],
  'total', ARGV[10], 'locked', locked, 'pledged', pledged, 'version', version,
  'updated_ms', ARGV[12])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[13], '*', 'type', ARGV[2] .. '_recorded',
  'uid', ARGV[3], 'asset', ARGV[4], 'amount', ARGV[5], 'reference_id', ARGV[1],
  'total', ARGV[10], 'locked', locked, 'pledged', pledged, 'version', version,
  'at_ms', ARGV[12])
return {'created', redis.call('HGETALL', KEYS[1])}
