-- purge_bins: delete one slice of a generation of a pool's bins that is no
-- longer the pool's (commit_pool.lua left it), so no script ever deletes a
-- whole big snapshot at once.
--
-- KEYS[1] quote:purge            set of "<pool id> <generation>" left to purge
-- KEYS[2] pool:<id>              pool configuration, JSON (its generation is kept)
-- KEYS[3] pool:<id>:bins         generation 0's index; g's is KEYS[3] .. ":g" .. g
-- ARGV[1] pool id
-- ARGV[2] the generation to purge
-- ARGV[3] bin key prefix, "bin:<id>:", generation 0
-- ARGV[4] most bins deleted by this call
--
-- Returns the bins of that generation left (0: done, and the entry is
-- removed from KEYS[1]). Never touches the pool's current generation.

local gen = tonumber(ARGV[2])
local pool = redis.call('GET', KEYS[2])
if pool and tonumber(cjson.decode(pool)['bins_gen'] or 0) == gen then
  redis.call('SREM', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
  return 0
end
if gen > 0 then
  -- UNLINK frees a big hash in the background, not in this script.
  local index = KEYS[3] .. ':g' .. gen
  redis.call('UNLINK', index, index .. ':data')
  redis.call('SREM', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
  return 0
end
local ids = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[4]) - 1)
if #ids > 0 then
  local keys = {}
  for n, id in ipairs(ids) do
    keys[n] = ARGV[3] .. id
  end
  redis.call('DEL', unpack(keys))
  redis.call('ZREM', KEYS[3], unpack(ids))
end
local left = redis.call('ZCARD', KEYS[3])
if left == 0 then
  redis.call('SREM', KEYS[1], ARGV[1] .. ' ' .. ARGV[2])
end
return left
