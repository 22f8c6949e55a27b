-- gcra: one call against a rate budget, by the generic cell rate
-- algorithm. The budget is one number, its theoretical arrival time (TAT):
-- when it would be empty again if calls came exactly at the rate. A call
-- is allowed if TAT - now <= tolerance, and then moves TAT on by one
-- interval. Redis's own clock (TIME) is the only clock, so every gateway
-- on this Redis draws from the same budget whatever its own clock says.
--
-- KEYS[1] mirror:ratelimit:<class>:<principal>   the budget's TAT (a string,
--         microseconds of Redis time), expiring once the budget is full again
-- ARGV[1] emission interval, microseconds (1e6 / calls per second)
-- ARGV[2] tolerance, microseconds (interval * (burst - 1)): how far ahead
--         of now TAT may be for a call to pass
--
-- Returns {1, 0} (allowed, TAT moved on) or {0, retry_after_us} (refused,
-- nothing written: a refused call costs no budget).
-- Invariant: TAT never moves more than tolerance + interval past now, so
-- at most burst calls pass at once and then one per interval.

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local allow_at = tat - tolerance
if now < allow_at then
  return {0, allow_at - now}
end
local new_tat = tat + interval
-- Whole microseconds as digits: tostring would write 1.7e+15.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
  'PX', math.floor((new_tat - now) / 1000) + 1)
return {1, 0}
