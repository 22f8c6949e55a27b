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
-- KEYS[5] mirror:credit:response            responses to the WSP (std)
-- ARGV[1] consumer group   ARGV[2] entry id
-- ARGV[3] uid   ARGV[4] asset   ARGV[5] c_change   ARGV[6] ci
-- ARGV[7] custodian   (as the entry carries them; "" if absent)
--
-- Returns {"final"} if the WSP's record shows a decision (a redelivery after
-- a resync of R, or a request an operator decided on M): acknowledged, not
-- delivered, and this exchange's record of an unanswered delivery dropped;
-- {"answered"} if this exchange answered it before: acknowledged, not
-- delivered, and, if the WSP has not applied the answer, the recorded
-- response is published again (the WSP sent the request again because it
-- never got it; applying it twice changes nothing); else {"deliver", <CI
-- amount on R, "" if none>}. The record of a delivery is kept until it is
-- answered (respond.lua then sets its retention): a backend may take long.

local status = redis.call('HGET', KEYS[1], 'status')
if status == 'accepted' or status == 'rejected' then
  redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
  if not redis.call('HGET', KEYS[2], 'status') then
    redis.call('DEL', KEYS[2])
  end
  return {'final'}
end
local a = redis.call('HMGET', KEYS[2], 'status', 'reject_reason', 'ci', 'decided_s', 'uid', 'asset',
  'c_change', 'custodian')
if a[1] then
  redis.call('XACK', KEYS[4], ARGV[1], ARGV[2])
  redis.call('XADD', KEYS[5], '*',
    'custodian', a[8], 'request_id', string.match(KEYS[2], '^mirror:credit:answer:(.*)$'),
    'uid', a[5], 'asset', a[6], 'c_change', a[7], 'timestamp', a[4] or '0', 'ci', a[3],
    'status', a[1], 'reject_reason', a[2])
  return {'answered'}
end
redis.call('HSET', KEYS[2], 'entry_id', ARGV[2], 'group', ARGV[1], 'uid', ARGV[3],
  'asset', ARGV[4], 'c_change', ARGV[5], 'ci', ARGV[6], 'custodian', ARGV[7])
redis.call('PERSIST', KEYS[2])
return {'deliver', redis.call('HGET', KEYS[3], 'amount') or ''}
