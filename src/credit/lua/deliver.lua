-- deliver: screen one delivery of a credit request on the exchange's replica
-- (R) before an exchange backend sees it, in one atomic step, and remember
-- what was delivered, so that RespondToCreditRequest (on any gateway) can
-- answer it later without searching the stream.
--
-- Runs as the `exchange` ACL user: every command below is allowed by
-- deploy/redis/acl/replica.acl, nothing else is.
--
-- KEYS[1] mirror:credit:req:<request_id>    the WSP's record, replicated from
--         M; absent if the WSP is another implementation (extension key)
-- KEYS[2] mirror:credit:answer:<request_id> this exchange's record (R only)
-- KEYS[3] CI:<uid>:<asset>                  Credit Inventory, replicated
-- KEYS[4] mirror:credit:request             the request stream (for XACK)
-- ARGV[1] consumer group   ARGV[2] entry id   ARGV[3] retention, ms
-- ARGV[4] uid   ARGV[5] asset   ARGV[6] c_change   ARGV[7] ci
-- ARGV[8] custodian   (as the entry carries them; "" if absent)
--
-- Returns {"final"} if the WSP's record shows a decision (a redelivery after
-- a resync of R): acknowledged, not delivered; {"answered"} if this exchange
-- answered it before (its response is on R): acknowledged, not delivered;
-- else {"deliver", <CI amount on R, "" if none>}.

local status = redis.call('HGET', KEYS[1], 'status')
if status == 'accepted' or status == 'rejected' then
  redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
  return {'final'}
end
if redis.call('HGET', KEYS[2], 'status') then
  redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
  return {'answered'}
end
redis.call('HSET', KEYS[2], 'entry_id', ARGV[2], 'group', ARGV[1], 'uid', ARGV[4],
  'asset', ARGV[5], 'c_change', ARGV[6], 'ci', ARGV[7], 'custodian', ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {'deliver', redis.call('HGET', KEYS[3], 'amount') or ''}
