-- revoke: revoke one attestation, idempotently, in one atomic step: its
-- record says revoked, its bit in its status list is set, the list's
-- revision goes up (so its signed credential is made again when next read),
-- and a "revoked" event carries the record.
--
-- KEYS[1] attestation:{verification_stream}:att:<attestation_id>  the record
-- KEYS[2] attestation:{verification_stream}:list:<list id>:bits   the list's bits
-- KEYS[3] attestation:{verification_stream}:lists                 every list's state
-- KEYS[4] attestation:{verification_stream}:events                the event log
-- ARGV[1] list id (the record's, as the caller read it)
-- ARGV[2] index in the list (the record's)
-- ARGV[3] reason (bounded by the caller)
-- ARGV[4] now, unix ms   ARGV[5] approximate MAXLEN of the event log
--
-- Returns {"revoked", <record>} or {"existing", <record>} (revoked before:
-- nothing changes, the first reason stays), or {"unknown", {}} if there is
-- no such attestation. Errors: STALE if the record's list is not ARGV[1]
-- (never: a record's list does not change).
-- Invariant: a revoked record's bit is set; a set bit's record is revoked.

local rec = redis.call('HMGET', KEYS[1], 'status', 'list_id', 'list_index')
if not rec[1] then
  return {'unknown', {}}
end
if rec[2] ~= ARGV[1] or rec[3] ~= ARGV[2] then
  return redis.error_reply('STALE the record names another status list entry')
end
if rec[1] == 'revoked' then
  return {'existing', redis.call('HGETALL', KEYS[1])}
end
redis.call('HSET', KEYS[1], 'status', 'revoked', 'revoked_ms', ARGV[4],
  'revocation_reason', ARGV[3])
redis.call('SETBIT', KEYS[2], ARGV[2], 1)
redis.call('HINCRBY', KEYS[3], ARGV[1] .. ':revision', 1)
local record = redis.call('HGETALL', KEYS[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'type', 'revoked', 'at_ms', ARGV[4],
  unpack(record))
return {'revoked', record}
