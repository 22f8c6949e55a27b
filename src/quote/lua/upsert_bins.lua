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
-- Bins are written into the pool's generation (see read_hop.lua).
-- Invariant: an id is in the index iff its bin exists and is non-empty.
-- Cost: O(bins given); the caller bounds them.

local old = redis.call('GET', KEYS[1])
if not old then
  return redis.error_reply('NOPOOL pool does not exist')
end
local pool = cjson.decode(old)
if tostring(pool['bin_step']) ~= ARGV[7] then
  return redis.error_reply('STALE_POOL the pool changed while its bins were checked')
end
local gen = tonumber(pool['bins_gen'] or 0)
local index = KEYS[2]
if gen > 0 then
  index = KEYS[2] .. ':g' .. gen
end
local data = index .. ':data'
local function keys_of(ids)
  local keys = {}
  for n, id in ipairs(ids) do
    keys[n] = ARGV[5] .. id
  end
  return keys
end
local changed = false
if ARGV[3] ~= '' and pool['active_bin_id'] ~= tonumber(ARGV[3]) then
  pool['active_bin_id'] = tonumber(ARGV[3])
  changed = true
end

-- One MGET / MSET / ZADD / DEL / ZREM per slice, not a call per bin.
local SLICE = 500
local count = redis.call('ZCARD', index)
local written = 0
for first = 8, #ARGV, 2 * SLICE do
  local last = math.min(first + 2 * SLICE - 1, #ARGV)
  local ids = {}
  for i = first, last, 2 do
    ids[#ids + 1] = ARGV[i]
  end
  local stored
  if gen > 0 then
    stored = redis.call('HMGET', data, unpack(ids))
  else
    stored = redis.call('MGET', unpack(keys_of(ids)))
  end
  for n = 1, #ids do
    local bin = ARGV[first + 2 * (n - 1) + 1]
    local old_bin = stored[n]
    if bin ~= '' and not old_bin then
      count = count + 1
    elseif bin == '' and old_bin then
      count = count - 1
    end
    if (old_bin or '') ~= bin then
      changed = true
    end
    written = written + 1
  end
end
if count > tonumber(ARGV[6]) then
  return redis.error_reply('TOO_MANY_BINS the pool would hold ' .. count .. ' bins, more than ' .. ARGV[6])
end
if not changed then
  return {written, redis.call('ZCARD', index)}
end

pool['last_updated'] = tonumber(ARGV[2])
redis.call('SET', KEYS[1], cjson.encode(pool))
for first = 8, #ARGV, 2 * SLICE do
  local last = math.min(first + 2 * SLICE - 1, #ARGV)
  local sets, adds, dels, rems = {}, {}, {}, {}
  for i = first, last, 2 do
    local id, bin = ARGV[i], ARGV[i + 1]
    if bin == '' then
      dels[#dels + 1] = id
      rems[#rems + 1] = id
    else
      sets[#sets + 1] = gen > 0 and id or ARGV[5] .. id
      sets[#sets + 1] = bin
      adds[#adds + 1] = id
      adds[#adds + 1] = id
    end
  end
  if #sets > 0 then
    if gen > 0 then
      redis.call('HSET', data, unpack(sets))
    else
      redis.call('MSET', unpack(sets))
    end
    redis.call('ZADD', index, unpack(adds))
  end
  if #dels > 0 then
    if gen > 0 then
      redis.call('HDEL', data, unpack(dels))
    else
      redis.call('DEL', unpack(keys_of(dels)))
    end
    redis.call('ZREM', index, unpack(rems))
  end
end
local version = redis.call('GET', KEYS[4]) or '0'
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'pool_id', ARGV[1], 'kind', 'bins',
  'version', version)
return {written, redis.call('ZCARD', index)}
