-- upsert_bins: write some bins of an existing pool (and maybe move its
-- active bin) in one atomic step, as a data processing service would after
-- on-chain changes. A write that changes nothing writes nothing.
--
-- KEYS[1] pool:<id>             pool configuration, JSON
-- KEYS[2] pool:<id>:bins        sorted set of non-empty bin ids (score = id)
-- KEYS[3] quote:events          change stream: pool_id, kind = "bins", version
-- KEYS[4] quote:pools:version   pool-set version (read, for the event)
-- ARGV[1] pool id
-- ARGV[2] now, unix milliseconds
-- ARGV[3] new active bin id, or "" to keep it
-- ARGV[4] approximate MAXLEN of quote:events
-- ARGV[5] bin key prefix, "bin:<id>:"
-- ARGV[6] most non-empty bins the pool may hold
-- ARGV[7] the pool's bin_step the caller validated the bins against
-- ARGV[8..] pairs of bin id, bin JSON ("" = empty bin: remove it)
--
-- Returns {bins written, number of non-empty bins}, or one of these errors
-- with nothing written: NOPOOL (the pool does not exist), STALE_POOL (its
-- bin_step is no longer ARGV[7]: validate again), TOO_MANY_BINS.
-- Invariant: an id is in KEYS[2] iff its bin key exists and is non-empty.
-- Cost: O(bins given); the caller bounds them.

local old = redis.call('GET', KEYS[1])
if not old then
  return redis.error_reply('NOPOOL pool does not exist')
end
local pool = cjson.decode(old)
if tostring(pool['bin_step']) ~= ARGV[7] then
  return redis.error_reply('STALE_POOL the pool changed while its bins were checked')
end
local changed = false
if ARGV[3] ~= '' and pool['active_bin_id'] ~= tonumber(ARGV[3]) then
  pool['active_bin_id'] = tonumber(ARGV[3])
  changed = true
end

local count = redis.call('ZCARD', KEYS[2])
local written = 0
for i = 8, #ARGV, 2 do
  local id, bin = ARGV[i], ARGV[i + 1]
  local stored = redis.call('GET', ARGV[5] .. id)
  if bin ~= '' and not stored then
    count = count + 1
  elseif bin == '' and stored then
    count = count - 1
  end
  if (stored or '') ~= bin then
    changed = true
  end
  written = written + 1
end
if count > tonumber(ARGV[6]) then
  return redis.error_reply('TOO_MANY_BINS the pool would hold ' .. count .. ' bins, more than ' .. ARGV[6])
end
if not changed then
  return {written, redis.call('ZCARD', KEYS[2])}
end

pool['last_updated'] = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(pool))
for i = 8, #ARGV, 2 do
  local id, bin = ARGV[i], ARGV[i + 1]
  if bin == '' then
    redis.call('DEL', ARGV[5] .. id)
    redis.call('ZREM', KEYS[2], id)
  else
    redis.call('SET', ARGV[5] .. id, bin)
    redis.call('ZADD', KEYS[2], id, id)
  end
end
local version = redis.call('GET', KEYS[4]) or '0'
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'pool_id', ARGV[1], 'kind', 'bins',
  'version', version)
return {written, redis.call('ZCARD', KEYS[2])}
