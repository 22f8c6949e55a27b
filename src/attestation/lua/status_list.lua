-- status_list: read one status list's state, bits and signed credential at
-- one instant (read only).
--
-- KEYS[1] attestation:{verification_stream}:lists                 every list's state
-- KEYS[2] attestation:{verification_stream}:list:<list id>:bits   its bits
-- KEYS[3] attestation:{verification_stream}:list:<list id>:signed its signed credential
-- ARGV[1] list id
--
-- Returns {} if there is no such list, else {key id, size, revision, bits
-- ("" if none set), signed revision ("" if never signed), signed
-- credential ("")}.

local state = redis.call('HMGET', KEYS[1], ARGV[1] .. ':key', ARGV[1] .. ':size',
  ARGV[1] .. ':revision')
if not state[1] then
  return {}
end
local signed = redis.call('HMGET', KEYS[3], 'revision', 'credential')
return {state[1], state[2], state[3], redis.call('GET', KEYS[2]) or '', signed[1] or '',
  signed[2] or ''}
