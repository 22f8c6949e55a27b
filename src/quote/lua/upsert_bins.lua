-- upsert_bins: write some bins of an existing pool (and maybe move its
-- active bin) in one atomic step, as a data processing service would after
-- on-chain changes.
--
-- KEYS[1] pool:<id>             pool configuration, JSON
-- KEYS[2] pool:<id>:bins        sorted set of non-empty bin ids (score = id)
-- KEYS[3] quote:events          change stream: pool_id, kind = "bins"
-- ARGV[1] pool id
-- ARGV[2] now, unix milliseconds
-- ARGV[3] new active bin id, or "" to keep it
-- ARGV[4] approximate MAXLEN of quote:events
-- ARGV[5] bin key prefix, "bin:<id>:"
-- ARGV[6..] pairs of bin id, bin JSON ("" = empty bin: remove it)
--
-- Returns {bins written, number of non-empty bins}, or the error
-- "NOPOOL" if the pool does not exist (then nothing is written).
-- Invariant: an id is in KEYS[2] iff its bin key exists and is non-empty.

local old = redis.call('GET', KEYS[1])
if not old then
  return redis.error_reply('NOPOOL pool does not exist')
end
local pool = cjson.decode(old)
pool['last_updated'] = tonumber(ARGV[2])
if ARGV[3] ~= '' then
  pool['active_bin_id'] = tonumber(ARGV[3])
end
redis.call('SET', KEYS[1], cjson.encode(pool))

local written = 0
for i = 6, #ARGV, 2 do
  local id, bin = ARGV[i], ARGV[i + 1]
  if bin == '' then
    redis.call('DEL', ARGV[5] .. id)
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('SET', ARGV[5] .. id, bin)
    redis.call('ZADD', KEYS[2], id, id)
  end
  written = written + 1
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'pool_id', ARGV[1], 'kind', 'bins')
return {written, redis.call('ZCARD', KEYS[2])}
