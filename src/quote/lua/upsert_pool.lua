-- upsert_pool: write a pool's configuration and bins in one atomic step, so
-- a concurrent quote (read_hop.lua) sees the old pool or the new one, never
-- a mix, and bump the route graph version.
--
-- KEYS[1] pool:<id>             pool configuration, JSON
-- KEYS[2] pool:<id>:bins        sorted set of non-empty bin ids (score = id)
-- KEYS[3] quote:pools           set of every pool id
-- KEYS[4] quote:pools:version   route graph version, +1 on every pool write
-- KEYS[5] quote:events          change stream: pool_id, kind = "pool"
-- KEYS[6] tokens:<token_x>      seed index: pools trading token_x
-- KEYS[7] tokens:<token_y>      seed index: pools trading token_y
-- KEYS[8] pairs:<x>:<y>         seed index: pools of the pair
-- ARGV[1] pool id
-- ARGV[2] pool JSON (created_at / last_updated are set here)
-- ARGV[3] now, unix milliseconds
-- ARGV[4] "1": remove the pool's bins not listed (a full snapshot)
-- ARGV[5] approximate MAXLEN of quote:events
-- ARGV[6] bin key prefix, "bin:<id>:"
-- ARGV[7..] pairs of bin id, bin JSON ("" = empty bin: remove it)
--
-- Returns {1 if the pool is new else 0, number of non-empty bins}, or the
-- error TOKENS_CHANGED (nothing written) if the pool exists with other tokens.
-- Invariant: an id is in KEYS[2] iff its bin key exists and is non-empty.
-- Bin keys are derived from ARGV[6]: one script writes all of a pool.

local old = redis.call('GET', KEYS[1])
local pool = cjson.decode(ARGV[2])
local now = tonumber(ARGV[3])
pool['created_at'] = now
if old then
  old = cjson.decode(old)
  -- A pool's tokens never change: its index entries and every route
  -- through it depend on them. Nothing is written.
  if old['token_x'] ~= pool['token_x'] or old['token_y'] ~= pool['token_y'] then
    return redis.error_reply('TOKENS_CHANGED the tokens of an existing pool cannot change')
  end
  pool['created_at'] = old['created_at'] or now
end
pool['last_updated'] = now
redis.call('SET', KEYS[1], cjson.encode(pool))

if ARGV[4] == '1' then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    redis.call('DEL', ARGV[6] .. id)
  end
  redis.call('DEL', KEYS[2])
end
for i = 7, #ARGV, 2 do
  local id, bin = ARGV[i], ARGV[i + 1]
  if bin == '' then
    redis.call('DEL', ARGV[6] .. id)
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('SET', ARGV[6] .. id, bin)
    redis.call('ZADD', KEYS[2], id, id)
  end
end

redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[6], ARGV[1])
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('SADD', KEYS[8], ARGV[1])
redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'pool_id', ARGV[1], 'kind', 'pool')
if old then
  return {0, redis.call('ZCARD', KEYS[2])}
end
return {1, redis.call('ZCARD', KEYS[2])}
