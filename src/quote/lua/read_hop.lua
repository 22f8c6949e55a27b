-- read_hop: one consistent snapshot of what a swap through a pool needs:
-- its configuration and the next non-empty bins from the active bin in the
-- swap's direction, found through the bin index (never KEYS or SCAN).
--
-- KEYS[1] pool:<id>             pool configuration, JSON
-- KEYS[2] pool:<id>:bins        sorted set of non-empty bin ids (score = id)
-- KEYS[3] quote:pools:version   route graph version
-- ARGV[1] "down" (X->Y: ids <= active, descending) or "up" (Y->X: ids >= active)
-- ARGV[2] most bins to return
-- ARGV[3] bin key prefix, "bin:<id>:"
--
-- Returns {version, pool JSON, id, bin JSON, id, bin JSON, ...} in walk
-- order, or {version} if the pool does not exist. Read-only.
--
-- Where the bins are: the pool's "bins_gen" says. Generation 0 (absent):
-- the seed's keys, index KEYS[2] and bin keys ARGV[3] .. id. Generation
-- g > 0 (written by a staged snapshot, see commit_pool.lua): index
-- KEYS[2] .. ":g" .. g and one hash of id -> bin JSON, that index .. ":data".
-- Either way this one script reads one generation: a snapshot flipped in
-- while it runs is not seen half.

local version = redis.call('GET', KEYS[3]) or '0'
local pool = redis.call('GET', KEYS[1])
if not pool then
  return {version}
end
local decoded = cjson.decode(pool)
local active = decoded['active_bin_id']
local gen = tonumber(decoded['bins_gen'] or 0)
local index = KEYS[2]
if gen > 0 then
  index = KEYS[2] .. ':g' .. gen
end
local ids
if ARGV[1] == 'down' then
  ids = redis.call('ZREVRANGEBYSCORE', index, active, '-inf', 'LIMIT', 0, ARGV[2])
else
  ids = redis.call('ZRANGEBYSCORE', index, active, '+inf', 'LIMIT', 0, ARGV[2])
end
local out = {version, pool}
if #ids == 0 then
  return out
end
-- One MGET (or HMGET), not a GET per bin: each redis.call from Lua has a
-- fixed cost.
local bins
if gen > 0 then
  bins = redis.call('HMGET', index .. ':data', unpack(ids))
else
  local keys = {}
  for i, id in ipairs(ids) do
    keys[i] = ARGV[3] .. id
  end
  bins = redis.call('MGET', unpack(keys))
end
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = bins[i] or ''
end
return out
