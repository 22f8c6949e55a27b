-- commit_pool: make a staged snapshot (stage_bins.lua) the pool's, with its
-- configuration, in one step: readers (read_hop.lua) see the old generation
-- or the new one, never a mix. O(1) in the number of bins: the old
-- generation is left to purge_bins.lua, in slices.
--
-- KEYS[1] pool:<id>                  pool configuration, JSON
-- KEYS[2] pool:<id>:bins:g<g>        staged sorted set of bin ids
-- KEYS[3] pool:<id>:bins:g<g>:data   staged hash of bins
-- KEYS[4] quote:pools                set of every pool id
-- KEYS[5] quote:pools:version        pool-set version, +1 when a pool is created
-- KEYS[6] quote:events               change stream: pool_id, kind = "pool", version, created
-- KEYS[7] tokens:<token_x>           seed index
-- KEYS[8] tokens:<token_y>           seed index
-- KEYS[9] pairs:<x>:<y>              seed index
-- KEYS[10] quote:purge               set of "<pool id> <generation>" left to purge
-- ARGV[1] pool id
-- ARGV[2] pool JSON
-- ARGV[3] now, unix milliseconds
-- ARGV[4] approximate MAXLEN of quote:events
-- ARGV[5] the staged generation g
-- ARGV[6] bins staged, as the caller counted them
--
-- Returns {1 if the pool is new else 0, bins}, or an error with nothing
-- written: TOKENS_CHANGED, or STAGING_LOST (fewer bins staged than
-- ARGV[6]: they expired, or another load used the generation).

local old = redis.call('GET', KEYS[1])
local pool = cjson.decode(ARGV[2])
local now = tonumber(ARGV[3])
if redis.call('ZCARD', KEYS[2]) ~= tonumber(ARGV[6]) then
  return redis.error_reply('STAGING_LOST the staged bins are not all there')
end
if old then
  old = cjson.decode(old)
  if old['token_x'] ~= pool['token_x'] or old['token_y'] ~= pool['token_y'] then
    return redis.error_reply('TOKENS_CHANGED the tokens of an existing pool cannot change')
  end
  redis.call('SADD', KEYS[10], ARGV[1] .. ' ' .. tostring(old['bins_gen'] or 0))
end
pool['created_at'] = old and (old['created_at'] or now) or now
pool['last_updated'] = now
pool['bins_gen'] = tonumber(ARGV[5])
redis.call('PERSIST', KEYS[2])
redis.call('PERSIST', KEYS[3])
redis.call('SET', KEYS[1], cjson.encode(pool))

local version
if old then
  version = redis.call('GET', KEYS[5]) or '0'
else
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('SADD', KEYS[7], ARGV[1])
  redis.call('SADD', KEYS[8], ARGV[1])
  redis.call('SADD', KEYS[9], ARGV[1])
  version = redis.call('INCR', KEYS[5])
end
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[4], '*', 'pool_id', ARGV[1], 'kind', 'pool',
  'version', version, 'created', old and '0' or '1')
return {old and 0 or 1, redis.call('ZCARD', KEYS[2])}
