-- upsert_pool: write a pool's configuration and bins in one atomic step, so
-- a concurrent quote (read_hop.lua) sees the old pool or the new one, never
-- a mix. A write that changes nothing writes nothing (no timestamp, no
-- event). The pool-set version moves only when a pool is created: the route
-- graph holds topology only, and a pool's tokens never change. Snapshots
-- too big for one script go through stage_bins.lua + commit_pool.lua.
--
-- KEYS[1] pool:<id>             pool configuration, JSON
-- KEYS[2] pool:<id>:bins        sorted set of non-empty bin ids (score = id), generation 0
-- KEYS[3] quote:pools           set of every pool id
-- KEYS[4] quote:pools:version   pool-set version, +1 when a pool is created
-- KEYS[5] quote:events          change stream: pool_id, kind = "pool", version, created
-- KEYS[6] tokens:<token_x>      seed index: pools trading token_x
-- KEYS[7] tokens:<token_y>      seed index: pools trading token_y
-- KEYS[8] pairs:<x>:<y>         seed index: pools of the pair
-- ARGV[1] pool id
-- ARGV[2] pool JSON (created_at / last_updated / bins_gen are set here)
-- ARGV[3] now, unix milliseconds
-- ARGV[4] "1": remove the pool's bins not listed (a full snapshot)
-- ARGV[5] approximate MAXLEN of quote:events
-- ARGV[6] bin key prefix, "bin:<id>:", generation 0
-- ARGV[7] most non-empty bins the pool may hold
-- ARGV[8] most stored bins a full snapshot may remove here
-- ARGV[9..] pairs of bin id, bin JSON ("" = empty bin: remove it)
--
-- Returns {1 if the pool is new else 0, number of non-empty bins, 1 if
-- anything changed else 0}, or one of these errors, with nothing written:
-- TOKENS_CHANGED (the pool exists with other tokens), BIN_STEP_CHANGED (a
-- new bin_step without a full snapshot: stored bins might have no price at
-- the new step), TOO_MANY_BINS (the pool would hold more than ARGV[7]),
-- NEEDS_STAGING (a full snapshot would remove more than ARGV[8] stored
-- bins: the caller stages it instead).
-- Bins live in the pool's generation (see read_hop.lua): generation 0 in
-- KEYS[2] and ARGV[6] .. id; generation g in KEYS[2] .. ":g" .. g and its
-- hash KEYS[2] .. ":g" .. g .. ":data".
-- Invariant: an id is in the index iff its bin exists and is non-empty.
-- Cost: O(bins given + ARGV[8]); the caller bounds both.

local CONFIG = {'pool_id', 'token_x', 'token_y', 'bin_step', 'active_bin_id',
  'base_factor', 'variable_fee_control', 'max_volatility_accumulator',
  'protocol_share_bps', 'status', 'token_x_decimals', 'token_y_decimals'}
local FIRST = 9
local SLICE = 500

local old = redis.call('GET', KEYS[1])
local pool = cjson.decode(ARGV[2])
local now = tonumber(ARGV[3])
local replace = ARGV[4] == '1'
local changed = not old
if old then
  old = cjson.decode(old)
  -- A pool's tokens never change: its index entries and every route
  -- through it depend on them. Nothing is written.
  if old['token_x'] ~= pool['token_x'] or old['token_y'] ~= pool['token_y'] then
    return redis.error_reply('TOKENS_CHANGED the tokens of an existing pool cannot change')
  end
  if old['bin_step'] ~= pool['bin_step'] and not replace then
    return redis.error_reply('BIN_STEP_CHANGED a new bin_step needs a full snapshot (replace_bins)')
  end
  for _, k in ipairs(CONFIG) do
    if old[k] ~= pool[k] then
      changed = true
    end
  end
end

local gen = old and tonumber(old['bins_gen'] or 0) or 0
local index = KEYS[2]
if gen > 0 then
  index = KEYS[2] .. ':g' .. gen
end
local data = index .. ':data'
local function keys_of(ids)
  local keys = {}
  for n, id in ipairs(ids) do
    keys[n] = ARGV[6] .. id
  end
  return keys
end
local function mget(ids)
  if gen > 0 then
    return redis.call('HMGET', data, unpack(ids))
  end
  return redis.call('MGET', unpack(keys_of(ids)))
end

local stored_count = redis.call('ZCARD', index)
if replace and stored_count > tonumber(ARGV[8]) then
  return redis.error_reply('NEEDS_STAGING the pool holds ' .. stored_count .. ' bins: stage the snapshot')
end

-- The bins as they will be, counted before anything is written; stored
-- values read with one MGET per slice, not a GET per bin (each redis.call
-- from Lua has a fixed cost).
local count = stored_count
if replace then
  count = 0
end
local given = 0
for first = FIRST, #ARGV, 2 * SLICE do
  local last = math.min(first + 2 * SLICE - 1, #ARGV)
  local ids = {}
  for i = first, last, 2 do
    ids[#ids + 1] = ARGV[i]
  end
  local stored = mget(ids)
  for n = 1, #ids do
    local bin = ARGV[first + 2 * (n - 1) + 1]
    local old_bin = stored[n]
    if bin ~= '' then
      given = given + 1
      if replace or not old_bin then
        count = count + 1
      end
    elseif old_bin and not replace then
      count = count - 1
    end
    if (old_bin or '') ~= bin then
      changed = true
    end
  end
end
if replace and stored_count ~= given then
  changed = true
end
if count > tonumber(ARGV[7]) then
  return redis.error_reply('TOO_MANY_BINS the pool would hold ' .. count .. ' bins, more than ' .. ARGV[7])
end
if not changed then
  return {0, stored_count, 0}
end

pool['created_at'] = now
if old then
  pool['created_at'] = old['created_at'] or now
  pool['bins_gen'] = old['bins_gen']
end
pool['last_updated'] = now
redis.call('SET', KEYS[1], cjson.encode(pool))

if replace then
  local ids = redis.call('ZRANGE', index, 0, -1)
  if gen > 0 then
    redis.call('UNLINK', data)
  else
    for i = 1, #ids, SLICE do
      local keys = {}
      for j = i, math.min(i + SLICE - 1, #ids) do
        keys[#keys + 1] = ARGV[6] .. ids[j]
      end
      redis.call('DEL', unpack(keys))
    end
  end
  redis.call('DEL', index)
end
-- Writes in slices too: one MSET (HSET), ZADD, DEL (HDEL), ZREM each.
for first = FIRST, #ARGV, 2 * SLICE do
  local last = math.min(first + 2 * SLICE - 1, #ARGV)
  local sets, adds, dels, rems = {}, {}, {}, {}
  for i = first, last, 2 do
    local id, bin = ARGV[i], ARGV[i + 1]
    if bin == '' then
      dels[#dels + 1] = id
      rems[#rems + 1] = id
    else
      sets[#sets + 1] = gen > 0 and id or ARGV[6] .. id
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

local version
if old then
  version = redis.call('GET', KEYS[4]) or '0'
else
  redis.call('SADD', KEYS[3], ARGV[1])
  redis.call('SADD', KEYS[6], ARGV[1])
  redis.call('SADD', KEYS[7], ARGV[1])
  redis.call('SADD', KEYS[8], ARGV[1])
  version = redis.call('INCR', KEYS[4])
end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'pool_id', ARGV[1], 'kind', 'pool',
  'version', version, 'created', old and '0' or '1')
if old then
  return {0, redis.call('ZCARD', index), 1}
end
return {1, redis.call('ZCARD', index), 1}
