-- verdict: the WSP's verdict on a recorded report, in one atomic step with
-- the standard confirmation (mirror:settlement:confirmation) and the events.
-- COMPLETED applies every net position: Credit Inventory per asset and the
-- vault (a negative net takes custody from the oldest pledges, which leave
-- custody; a positive one adds custody as a settlement lot, an ACTIVE
-- pledge backing the new credit). FAILED and DISPUTED apply nothing.
--
-- Money is never computed here (Lua numbers are doubles): the caller read
-- each (user, asset), computed the plan with exact decimals, and this
-- script applies it only if everything it was computed from is unchanged
-- (CI version and amount, vault version: "stale" otherwise, the caller
-- reads again) and no credit request of the pair is pending (its `ci`
-- would be overwritten: CREDIT_REQUEST_IN_FLIGHT). A report takes one
-- verdict, so each (report_id, asset) is applied exactly once.
--
-- KEYS[1] mirror:settlement:report:<report_id>   the report's record
-- KEYS[2] mirror:settlement:cycle:<cycle_id>     its cycle
-- KEYS[3] mirror:settlement:confirmation         verdicts (std)
-- KEYS[4] mirror:settlement:events               settlement event log
-- KEYS[5] mirror:credit:events                   credit event log
-- KEYS[6] mirror:vault-events                    vault event log
-- KEYS[7] mirror:settlement:cosign-due           cycles due (zset)
-- KEYS[8] mirror:credit:assets:<uid>             the user's CI assets
-- KEYS[9] mirror:pledges:<uid>                   the user's pledges
-- KEYS[10..] per asset of the plan, in its order, four keys:
--   CI:<uid>:<asset>, mirror:credit:inflight:<uid>:<asset>,
--   mirror:vault:<uid>:<asset>, mirror:pledges-active:<uid>:<asset>
-- (the plan's pledges and lots are written as mirror:pledge:<id>; their ids
-- come from this gateway's plan, never from the exchange; M is one Redis)
-- ARGV[1] report_id   ARGV[2] verdict: completed | failed | disputed
-- ARGV[3] reason   ARGV[4] now, unix ms   ARGV[5] now, unix seconds
-- ARGV[6] approximate MAXLEN of the event logs
-- ARGV[7] the plan, JSON: [{asset, net, ci_version, ci_amount, ci_new,
--         vault: false | {version, total, locked, pledged},
--         pledges: [[id, remaining, status]], lot: false | {id, amount}}]
--         ("[]" unless completed)
-- ARGV[8] the confirmation's details, JSON
-- ARGV[9] disputed lines, JSON ("" unless disputed)
-- ARGV[10] applied, JSON [[asset, net]] ("" unless completed)
-- ARGV[11] confirmations older than this id are trimmed (MINID ~)
--
-- Returns {"applied" | "existing", cycle status, undecided}. Errors:
-- NOT_FOUND; ALREADY_CONFIRMED <status> (another verdict);
-- NOT_CONFIRMABLE <status>; CYCLE_MISMATCH <reason>;
-- CREDIT_REQUEST_IN_FLIGHT <asset> <request_id>. Or {"stale"}.
-- Invariants, for every (user, asset): CI = accepted credit changes +
-- completed nets, never below zero; total = locked + available; locked =
-- CI + pending pledges; pledged = remaining of active pledges.

local r = redis.call('HMGET', KEYS[1], 'status', 'uid', 'cycle_id')
if not r[1] then
  return redis.error_reply('NOT_FOUND no such report')
end
local function cycle_state()
  local c = redis.call('HMGET', KEYS[2], 'status', 'undecided')
  return {c[1] or 'open', c[2] or '0'}
end
if r[1] == ARGV[2] then
  local c = cycle_state()
  return {'existing', c[1], c[2]}
end
if r[1] == 'completed' or r[1] == 'failed' or r[1] == 'disputed' then
  return redis.error_reply('ALREADY_CONFIRMED ' .. r[1])
end
if r[1] ~= 'reported' then
  return redis.error_reply('NOT_CONFIRMABLE ' .. r[1])
end
local cycle = redis.call('HMGET', KEYS[2], 'status', 'reason')
if cycle[1] == 'mismatch' then
  return redis.error_reply('CYCLE_MISMATCH ' .. (cycle[2] or ''))
end

local plan = cjson.decode(ARGV[7])
local uid = r[2]
if ARGV[2] == 'completed' then
  for i, step in ipairs(plan) do
    local base = 9 + (i - 1) * 4
    local pending = redis.call('GET', KEYS[base + 2])
    if pending then
      return redis.error_reply('CREDIT_REQUEST_IN_FLIGHT ' .. step.asset .. ' ' .. pending)
    end
    local ci = redis.call('HMGET', KEYS[base + 1], 'version', 'amount')
    if (ci[1] or '0') ~= step.ci_version or (ci[2] or '') ~= step.ci_amount then
      return {'stale'}
    end
    if (redis.call('HGET', KEYS[base + 3], 'version') or '0') ~= step.vault_version then
      return {'stale'}
    end
  end
  for i, step in ipairs(plan) do
    local base = 9 + (i - 1) * 4
    redis.call('HSET', KEYS[base + 1], 'amount', step.ci_new, 'updated_ms', ARGV[4],
      'last_settlement_id', ARGV[1])
    redis.call('HINCRBY', KEYS[base + 1], 'version', 1)
    redis.call('ZADD', KEYS[8], 0, step.asset)
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'type', 'settled',
      'request_id', ARGV[1], 'uid', uid, 'asset', step.asset, 'c_change', step.net,
      'ci', step.ci_new, 'reason', '', 'at_ms', ARGV[4])
    if step.vault then
      local v = step.vault
      redis.call('HSET', KEYS[base + 3], 'total', v.total, 'locked', v.locked,
        'pledged', v.pledged, 'updated_ms', ARGV[4])
      local version = redis.call('HINCRBY', KEYS[base + 3], 'version', 1)
      for _, p in ipairs(step.pledges) do
        local key = 'mirror:pledge:' .. p[1]
        redis.call('HSET', key, 'remaining', p[2], 'updated_ms', ARGV[4])
        if p[3] == 'settled' then
          redis.call('HSET', key, 'status', 'settled')
          redis.call('ZREM', KEYS[base + 4], p[1])
        end
      end
      if step.lot then
        local key = 'mirror:pledge:' .. step.lot.id
        redis.call('HSET', key, 'pledge_id', step.lot.id, 'uid', uid, 'asset', step.asset,
          'amount', step.lot.amount, 'remaining', step.lot.amount, 'status', 'active',
          'credit_request_id', '', 'settlement_report_id', ARGV[1], 'chain', '', 'address', '',
          'reject_reason', '', 'created_ms', ARGV[4], 'updated_ms', ARGV[4])
        redis.call('ZADD', KEYS[base + 4], ARGV[4], step.lot.id)
        redis.call('ZADD', KEYS[9], ARGV[4], step.lot.id)
      end
      redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'type', 'settled', 'uid', uid,
        'asset', step.asset, 'amount', step.net, 'reference_id', ARGV[1], 'total', v.total,
        'locked', v.locked, 'pledged', v.pledged, 'version', version, 'at_ms', ARGV[4])
    end
  end
end

redis.call('HSET', KEYS[1], 'status', ARGV[2], 'reason', ARGV[3], 'decided_ms', ARGV[4],
  'disputed', ARGV[9], 'applied', ARGV[10])
if tonumber(redis.call('HGET', KEYS[2], 'undecided') or '0') > 0 then
  redis.call('HINCRBY', KEYS[2], 'undecided', -1)
end
redis.call('XADD', KEYS[3], 'MINID', '~', ARGV[11], '*', 'type', 'confirmation',
  'settlement_id', ARGV[1], 'user_id', uid, 'timestamp', ARGV[5], 'status', ARGV[2],
  'details', ARGV[8])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'type', ARGV[2], 'report_id', ARGV[1],
  'uid', uid, 'cycle_id', r[3], 'reason', ARGV[3], 'disputed', ARGV[9], 'applied', ARGV[10],
  'at_ms', ARGV[4])
local c = cycle_state()
if c[1] == 'verified' and tonumber(c[2]) == 0 then
  redis.call('ZADD', KEYS[7], ARGV[4], r[3])
end
return {'applied', c[1], c[2]}
