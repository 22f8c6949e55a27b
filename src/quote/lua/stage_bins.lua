-- stage_bins: write one slice of a staged full snapshot into a generation
-- no reader sees yet (commit_pool.lua makes it the pool's, in one step).
-- The staged keys expire unless committed, so an abandoned load leaves
-- nothing behind.
--
-- KEYS[1] pool:<id>:bins:g<g>        staged sorted set of bin ids
-- KEYS[2] pool:<id>:bins:g<g>:data   staged hash: bin id -> bin JSON
-- ARGV[1] seconds the staged keys live unless committed
-- ARGV[2..] pairs of bin id, bin JSON (non-empty bins only)
--
-- Returns the number of bins staged so far.
-- Cost: O(bins given); the caller bounds them (quote.max_bins_per_write).

local SLICE = 500
for first = 2, #ARGV, 2 * SLICE do
  local last = math.min(first + 2 * SLICE - 1, #ARGV)
  local sets, adds = {}, {}
  for i = first, last, 2 do
    sets[#sets + 1] = ARGV[i]
    sets[#sets + 1] = ARGV[i + 1]
    adds[#adds + 1] = ARGV[i]
    adds[#adds + 1] = ARGV[i]
  end
  redis.call('HSET', KEYS[2], unpack(sets))
  redis.call('ZADD', KEYS[1], unpack(adds))
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return redis.call('ZCARD', KEYS[1])
