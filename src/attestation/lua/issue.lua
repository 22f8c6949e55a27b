-- issue: record one signed attestation and acknowledge its result, exactly
-- once, in one atomic step. Signing happened before, in the gateway; if the
-- result was attested meanwhile (a redelivery racing a slow first attempt,
-- or a replay), the stored attestation wins and the caller's credential is
-- discarded: one result never has two credentials.
--
-- KEYS[1] attestation:{verification_stream}:att:<attestation_id>  the record
-- KEYS[2] attestation:{verification_stream}:subject:<subject>     the subject's index
-- KEYS[3] attestation:{verification_stream}:seq                   the issue sequence
-- KEYS[4] attestation:{verification_stream}:events                the event log
-- KEYS[5] verification_stream                                     the results (std)
-- KEYS[6] attestation:{verification_stream}:lists                 every list's state
-- ARGV[1] attestation_id   ARGV[2] digest of the result
-- ARGV[3] the result's entry id   ARGV[4] consumer group
-- ARGV[5] now, unix ms   ARGV[6] approximate MAXLEN of the event log
-- ARGV[7] status list id   ARGV[8] index in it (both also among the fields)
-- ARGV[9..] the record's fields and values
--
-- Returns "issued", "existing" (attested before with the same digest:
-- nothing written, the entry acknowledged), "conflict" (attested before
-- for another result under the same request_id: nothing written, the entry
-- left pending for the caller to dead-letter) or "stale" (the index was
-- never reserved in that list: Redis lost the lists' state, e.g. it
-- restarted empty; nothing written, the caller reserves again).
-- Invariant: one record per attestation id; every record is in its
-- subject's index and has one "issued" event; its entry is acknowledged.

local digest = redis.call('HGET', KEYS[1], 'digest')
if digest then
  if digest ~= ARGV[2] then
    return 'conflict'
  end
  redis.call('XACK', KEYS[5], ARGV[4], ARGV[3])
  return 'existing'
end
local reserved = redis.call('HGET', KEYS[6], ARGV[7] .. ':next')
if not reserved or tonumber(reserved) <= tonumber(ARGV[8]) then
  return 'stale'
end
local fields = {}
for i = 9, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
local seq = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[1], 'seq', seq, unpack(fields))
redis.call('ZADD', KEYS[2], seq, ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'type', 'issued', 'at_ms', ARGV[5],
  unpack(redis.call('HGETALL', KEYS[1])))
redis.call('XACK', KEYS[5], ARGV[4], ARGV[3])
return 'issued'
