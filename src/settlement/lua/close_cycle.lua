-- close_cycle: the exchange closing a settlement cycle on R, in two steps.
-- "begin" marks the cycle closing (submit.lua then refuses its reports) and
-- returns the mark; "publish" XADDs the cycle summary (the standard entry on
-- mirror:settlement:batch:response) and keeps it in the mark, unless the
-- same summary was published already. Like submit.lua's record, the mark
-- lives on R only; a resync wipes it and a retry closes again (the same
-- reports give the same tree, and Ed25519 the same signature).
--
-- Runs as the `exchange` ACL user (deploy/redis/acl/replica.acl).
--
-- KEYS[1] mirror:settlement:closing:<cycle_id>   the mark (hash)
-- KEYS[2] mirror:settlement:batch:response       summaries (std)
-- KEYS[3] mirror:cursor:mirror:settlement:batch:response  the WSP's cursor
-- ARGV[1] step: begin | publish   ARGV[2] cycle_id   ARGV[3] now, unix ms
-- ARGV[4] how long the mark is kept, ms
-- ARGV[5..] publish only: size, root (base64), checkpoint, now (unix
--         seconds), length past which the stream is trimmed
--
-- Returns the mark as {field, value, ...} ("begin"), or {"published" |
-- "existing", entry id}.

if ARGV[1] == 'begin' then
  redis.call('HSETNX', KEYS[1], 'started_ms', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return redis.call('HGETALL', KEYS[1])
end
local size, root, checkpoint, now_s, maxlen = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local mark = redis.call('HMGET', KEYS[1], 'checkpoint', 'entry_id')
if mark[1] == checkpoint then
  return {'existing', mark[2]}
end
local entry = redis.call('XADD', KEYS[2], '*', 'type', 'cycle', 'cycle_id', ARGV[2],
  'size', size, 'root', root, 'checkpoint', checkpoint, 'timestamp', now_s, 'v', '1')
if redis.call('XLEN', KEYS[2]) > tonumber(maxlen) then
  local cursor = redis.call('GET', KEYS[3])
  if cursor then
    redis.call('XTRIM', KEYS[2], 'MINID', '~', cursor)
  end
end
redis.call('HSET', KEYS[1], 'size', size, 'root', root, 'checkpoint', checkpoint,
  'entry_id', entry, 'published_ms', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {'published', entry}
