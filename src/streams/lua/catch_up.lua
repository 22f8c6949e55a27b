-- catch_up: one batch of a watch's history together with the stream's
-- facts at the same instant, so the caller can tell whether entries after
-- its cursor were trimmed meanwhile (and then end the watch rather than
-- skip them).
--
-- KEYS[1] the stream
-- ARGV[1] cursor: entries after this id (exclusive)
-- ARGV[2] most entries to return
--
-- Returns {entries, info}: entries as XRANGE returns them; info as XINFO
-- STREAM returns it (flat field/value list), or false if the stream does
-- not exist. Read-only.

local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {entries, false}
end
return {entries, redis.call('XINFO', 'STREAM', KEYS[1])}
