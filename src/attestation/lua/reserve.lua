-- reserve: reserve a block of status list indexes for one issuer key, in
-- one atomic step. Each key has one open list at a time; a list that is
-- full is followed by a new one (a new list id). Indexes are handed out in
-- order; a block a gateway does not use up leaves unset bits (harmless).
--
-- KEYS[1] attestation:{verification_stream}:lists   every list's state (hash):
--         <id>:key, <id>:size, <id>:next, <id>:revision, <id>:created_ms,
--         current:<key id> (the key's open list), seq (the last list id)
-- ARGV[1] key id (verification method of the signing key)
-- ARGV[2] indexes wanted (>= 1)
-- ARGV[3] size of a new list, bits
-- ARGV[4] now, unix ms
--
-- Returns {list id, first index, count}: indexes first .. first+count-1 of
-- that list are the caller's alone; count may be less than asked (the
-- list's last ones), never 0.
-- Invariant: no index of a list is handed out twice.

local want = tonumber(ARGV[2])
local current = redis.call('HGET', KEYS[1], 'current:' .. ARGV[1])
if current then
  local size = tonumber(redis.call('HGET', KEYS[1], current .. ':size'))
  local next = tonumber(redis.call('HGET', KEYS[1], current .. ':next'))
  if next < size then
    local count = math.min(want, size - next)
    redis.call('HINCRBY', KEYS[1], current .. ':next', count)
    return {current, next, count}
  end
end
local id = tostring(redis.call('HINCRBY', KEYS[1], 'seq', 1))
local size = tonumber(ARGV[3])
local count = math.min(want, size)
redis.call('HSET', KEYS[1], id .. ':key', ARGV[1], id .. ':size', ARGV[3], id .. ':next', count,
  id .. ':revision', 0, id .. ':created_ms', ARGV[4], 'current:' .. ARGV[1], id)
return {id, 0, count}
