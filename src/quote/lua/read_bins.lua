-- read_bins: one page of a pool's non-empty bins by id, from its current
-- generation (see read_hop.lua), in one consistent step.
--
-- KEYS[1] pool:<id>              pool configuration, JSON
-- KEYS[2] pool:<id>:bins         generation 0's index; g's is KEYS[2] .. ":g" .. g
-- ARGV[1] lowest score, e.g. "-inf" or "(12" (ids above 12)
-- ARGV[2] most bins to return
-- ARGV[3] bin key prefix, "bin:<id>:", generation 0
--
-- Returns {id, bin JSON, id, bin JSON, ...} in id order ({} if the pool
-- does not exist). Read-only.

local pool = redis.call('GET', KEYS[1])
if not pool then
  return {}
end
local gen = tonumber(cjson.decode(pool)['bins_gen'] or 0)
local index = KEYS[2]
if gen > 0 then
  index = KEYS[2] .. ':g' .. gen
end
local ids = redis.call('ZRANGEBYSCORE', index, ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
if #ids == 0 then
  return {}
end
local bins
if gen > 0 then
  bins = redis.call('HMGET', index .. ':data', unpack(ids))
else
  local keys = {}
  for n, id in ipairs(ids) do
    keys[n] = ARGV[3] .. id
  end
  bins = redis.call('MGET', unpack(keys))
end
local out = {}
for n, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = bins[n] or ''
end
return out
