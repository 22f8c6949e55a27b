-- store_status_list: keep a freshly signed status list credential, if it
-- still shows the list's current revision and nothing newer is kept; return
-- what is kept. So every gateway answers with the same bytes for the same
-- state, and a credential signed before a revocation never replaces one
-- made after it.
--
-- KEYS[1] attestation:{verification_stream}:lists                 every list's state
-- KEYS[2] attestation:{verification_stream}:list:<list id>:signed its signed credential
-- ARGV[1] list id   ARGV[2] revision the credential shows   ARGV[3] the credential
--
-- Returns {revision kept, credential kept}.

local revision = redis.call('HGET', KEYS[1], ARGV[1] .. ':revision')
local kept = redis.call('HGET', KEYS[2], 'revision')
if revision == ARGV[2] and kept ~= ARGV[2] then
  redis.call('HSET', KEYS[2], 'revision', ARGV[2], 'credential', ARGV[3])
end
local now = redis.call('HMGET', KEYS[2], 'revision', 'credential')
return {now[1] or '', now[2] or ''}
