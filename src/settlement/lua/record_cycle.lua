-- record_cycle: record on M one entry of the exchange's cycle summary stream
-- on R (read by the WSP), and move the WSP's cursor past it, in one atomic
-- step: a closed cycle, VERIFIED (the WSP recomputed the same tree from its
-- own records and checked the exchange's signature) or MISMATCH (with why),
-- or an anomaly. From then on the cycle takes no report (record_report.lua
-- checks), and a MISMATCH cycle's reports cannot be confirmed.
--
-- The caller built the tree from the cycle's recorded reports, of which
-- there were ARGV[11]: if a report was recorded since (another gateway),
-- this answers "stale", moving nothing, and the caller builds it again.
--
-- KEYS[1] mirror:cursor:mirror:settlement:batch:response  the cursor
-- KEYS[2] mirror:settlement:cycle:<cycle_id>   the cycle (hash)
-- KEYS[3] mirror:settlement:leaves:<cycle_id>  its leaf hashes (string)
-- KEYS[4] mirror:settlement:events             settlement event log
-- KEYS[5] mirror:settlement:cosign-due         cycles due for the WSP's
--         countersignature (zset)
-- ARGV[1] the entry's id on R   ARGV[2] mode: "record" | "anomaly"
-- ARGV[3] cycle_id   ARGV[4] status: verified | mismatch   ARGV[5] reason
-- ARGV[6] size   ARGV[7] root, base64   ARGV[8] the exchange's checkpoint
-- ARGV[9] its origin   ARGV[10] the leaf hashes, 32 bytes each, tree order
-- ARGV[11] recorded reports the tree was built from
-- ARGV[12] now, unix ms   ARGV[13] approximate MAXLEN of the event log
--
-- Returns the status recorded, "duplicate" (the cursor is past the entry,
-- or the same close again), "anomaly", or "stale".

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
local function event(kind, reason, extra)
  local fields = {'type', kind, 'cycle_id', ARGV[3], 'report_id', '', 'uid', '',
    'reason', reason, 'entry_id', ARGV[1], 'at_ms', ARGV[12]}
  for _, v in ipairs(extra or {}) do table.insert(fields, v) end
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[13], '*', unpack(fields))
end
if ARGV[2] == 'anomaly' then
  redis.call('SET', KEYS[1], ARGV[1])
  event('anomaly', ARGV[5])
  return 'anomaly'
end

local c = redis.call('HMGET', KEYS[2], 'status', 'reports', 'undecided', 'root')
if c[1] == 'verified' or c[1] == 'mismatch' or c[1] == 'cosigned' then
  redis.call('SET', KEYS[1], ARGV[1])
  if c[4] == ARGV[7] then
    return 'duplicate'
  end
  event('anomaly', 'cycle ' .. ARGV[3] .. ' was closed again with another root; the first close is kept')
  return 'anomaly'
end
if (c[2] or '0') ~= ARGV[11] then
  return 'stale'
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'status', ARGV[4], 'reason', ARGV[5], 'size', ARGV[6],
  'root', ARGV[7], 'checkpoint', ARGV[8], 'exchange_checkpoint', ARGV[8], 'origin', ARGV[9],
  'closed_ms', ARGV[12], 'summary_entry', ARGV[1])
redis.call('HSETNX', KEYS[2], 'reports', '0')
redis.call('HSETNX', KEYS[2], 'undecided', '0')
if ARGV[4] == 'verified' then
  redis.call('SET', KEYS[3], ARGV[10])
  if tonumber(c[3] or '0') == 0 then
    redis.call('ZADD', KEYS[5], ARGV[12], ARGV[3])
  end
end
event('cycle_' .. ARGV[4], ARGV[5], {'size', ARGV[6]})
return ARGV[4]
