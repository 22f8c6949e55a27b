-- submit: publish one verification result to the verification stream for
-- SubmitVerification, idempotent on request_id, in one atomic step. The
-- result is identified by its digest (of subject, did type, did_id, result,
-- evidence hash and time), computed by the caller.
--
-- KEYS[1] attestation:{verification_stream}:submission:<request_id>
--         the submission record (hash: digest, entry_id, attestation_id)
-- KEYS[2] attestation:{verification_stream}:att:<attestation_id>
--         the attestation, once issued (its digest answers repeats for good)
-- KEYS[3] verification_stream   the results stream (std)
-- ARGV[1] request_id   ARGV[2] digest   ARGV[3] attestation_id
-- ARGV[4] how long the submission record is kept, ms
-- ARGV[5..] the entry's fields and values, in order
--
-- Returns {"created", <entry id>} or {"existing", <entry id of the first
-- submission>}. Errors: REQUEST_ID_REUSED (same id, another digest).
-- Invariant: one request_id, one entry (while its record is kept), so one
-- attestation.

local sub = redis.call('HMGET', KEYS[1], 'digest', 'entry_id')
if sub[1] then
  if sub[1] == ARGV[2] then
    return {'existing', sub[2]}
  end
  return redis.error_reply('REQUEST_ID_REUSED request_id was used for another result')
end
local att = redis.call('HMGET', KEYS[2], 'digest', 'entry_id')
if att[1] then
  if att[1] == ARGV[2] then
    return {'existing', att[2]}
  end
  return redis.error_reply('REQUEST_ID_REUSED request_id was used for another result')
end
local fields = {}
for i = 5, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local entry = redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('HSET', KEYS[1], 'digest', ARGV[2], 'entry_id', entry, 'attestation_id', ARGV[3],
  'request_id', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'created', entry}
