-- trim_results: trim the verification stream of what every consumer group
-- has consumed and acknowledged: below the smallest of each group's oldest
-- pending entry and last delivered entry. Another party's groups count too,
-- so no consumer loses an entry it has not read. Without any group nothing
-- is trimmed. Approximate (MINID ~): trims whole nodes, never more.
--
-- KEYS[1] verification_stream
--
-- Returns the number of entries trimmed.

local function digits_lt(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then return digits_lt(am, bm) end
  return digits_lt(as, bs)
end

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local floor = nil
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last = nil, nil
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  local low = last
  local pending = redis.call('XPENDING', KEYS[1], name)
  if pending[1] > 0 and before(pending[2], low) then
    low = pending[2]
  end
  if floor == nil or before(low, floor) then
    floor = low
  end
end
if floor == nil or floor == '0-0' then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', floor)
