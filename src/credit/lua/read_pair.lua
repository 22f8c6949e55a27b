-- read_pair: read, in one atomic step, everything a credit request (or a
-- settlement) of one (user, asset) is computed from: Credit Inventory, the
-- vault, the pending request if any, and the active pledges with what
-- remains of each. Read in several round trips, a decision applied between
-- them would give a vault and a pledge list of two different moments (a
-- release's plan would then not add up). Writes nothing.
--
-- KEYS[1] CI:<uid>:<asset>                      Credit Inventory (hash)
-- KEYS[2] mirror:vault:<uid>:<asset>            the vault (hash)
-- KEYS[3] mirror:credit:inflight:<uid>:<asset>  the pending request's id
-- KEYS[4] mirror:pledges-active:<uid>:<asset>   active pledges, oldest first
-- (each active pledge's mirror:pledge:<id> is read for its `remaining`; M
-- is one Redis, not a cluster)
-- ARGV[1] "1" to read the active pledges, "0" not to: only a release's plan
--         and a settlement use them, and they cost a read each
--
-- Returns {ci version or false, ci amount or false, vault as {field,
-- value, ...}, pending request id or false, {pledge id, remaining, ...}
-- oldest first (empty unless ARGV[1] is "1")}.

local ci = redis.call('HMGET', KEYS[1], 'version', 'amount')
local active = {}
if ARGV[1] == '1' then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
    active[#active + 1] = id
    active[#active + 1] = redis.call('HGET', 'mirror:pledge:' .. id, 'remaining') or '0'
  end
end
return {ci[1] or false, ci[2] or false, redis.call('HGETALL', KEYS[2]),
  redis.call('GET', KEYS[3]) or false, active}
