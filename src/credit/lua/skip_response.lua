-- skip_response: record that an entry of the exchange's response stream is
-- not a response this WSP can apply (not text, a field missing or out of
-- shape), and move the WSP's cursor past it, in one atomic step: the entry
-- is never applied, never blocks the reader, and is never skipped silently.
--
-- KEYS[1] mirror:cursor:mirror:credit:response  last response id handled
-- KEYS[2] mirror:credit:events                  credit event log
-- ARGV[1] the entry's id on R
-- ARGV[2] the request_id it names, if it names a valid one ("" otherwise)
-- ARGV[3] what is wrong and a bounded copy of what was seen
-- ARGV[4] now, unix milliseconds   ARGV[5] approximate MAXLEN of the event log
-- ARGV[6] the entry before this one in the same batch ("" for none), as in
--         apply_response.lua: if it was not handled, nothing is done
--
-- Returns "recorded", "duplicate" if the cursor is already at or past the
-- entry (another gateway handled it), or "behind" (ARGV[6]). The id
-- comparison is exact, as in apply_response.lua.

local function digits_gt(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function after(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then return digits_gt(am, bm) end
  return digits_gt(as, bs)
end

local cursor = redis.call('GET', KEYS[1])
if cursor and not after(ARGV[1], cursor) then
  return 'duplicate'
end
if ARGV[6] ~= '' and (not cursor or after(ARGV[6], cursor)) then
  return 'behind'
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'anomaly', 'request_id', ARGV[2],
  'uid', '', 'asset', '', 'c_change', '', 'ci', '', 'reason', ARGV[3], 'response_id', ARGV[1],
  'at_ms', ARGV[4])
return 'recorded'
