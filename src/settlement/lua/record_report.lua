-- record_report: record on M one entry of the exchange's report stream on R
-- (read by the WSP), and move the WSP's cursor past it, in one atomic step:
-- a report (REPORTED), a refusal, or an anomaly. Whatever the entry held,
-- the cursor moves and something is recorded: an entry never stops the
-- reader and is never skipped silently.
--
-- The entry was parsed and checked by the caller (every field bounded,
-- amounts exact; see settlement/model.rs); this script adds the checks that
-- need M's state: the user is known here, the cycle is open, the report a
-- correction supersedes is this user's and DISPUTED, and the id is not
-- taken by another report. Money is never computed here.
--
-- KEYS[1] mirror:cursor:mirror:settlement:individual:response  the cursor
-- KEYS[2] mirror:settlement:report:<report_id>   the report's record
-- KEYS[3] mirror:settlement:user:<uid>           the user's reports (zset)
-- KEYS[4] mirror:settlement:cycle-reports:<cycle_id>  the cycle's (zset)
-- KEYS[5] mirror:settlement:cycle:<cycle_id>     the cycle (hash)
-- KEYS[6] mirror:settlement:events               settlement event log
-- KEYS[7] mirror:settlement:report:<supersedes>  the corrected report
--         (KEYS[2] again if none)
-- KEYS[8] mirror:credit:assets:<uid>             exists iff the user ever
--         had credit here: the WSP's "known user"
-- ARGV[1] the entry's id on R
-- ARGV[2] mode: "record" (a well-formed report), "refuse" (a report id but
--         not a report this WSP records), "anomaly" (no usable report id)
-- ARGV[3] report_id ("" for an anomaly)   ARGV[4] uid   ARGV[5] cycle_id
-- ARGV[6] data: the standard data JSON, canonical ("" if unreadable)
-- ARGV[7] digest   ARGV[8] salt   ARGV[9] supersedes
-- ARGV[10] the entry's timestamp, unix seconds   ARGV[11] reason (refuse, anomaly)
-- ARGV[12] now, unix ms   ARGV[13] approximate MAXLEN of the event log
-- ARGV[14] how long a refused record is kept, ms   ARGV[15] eod, unix ms
--
-- Returns "recorded", "existing" (this report was recorded before: nothing
-- changes), "refused", "anomaly", or "duplicate" (the cursor is already at
-- or past the entry: another gateway handled it). Stream ids are compared
-- exactly, as strings of digits (Lua numbers are doubles).
-- Invariants: a recorded report never changes its content (another payload
-- under its id is an anomaly, the first is kept); only a refused record is
-- replaced; the cycle's `reports` counts its recorded reports, `undecided`
-- those still REPORTED; a closed cycle takes no report.

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
redis.call('SET', KEYS[1], ARGV[1])

local function event(kind, reason, extra)
  local fields = {'type', kind, 'report_id', ARGV[3], 'uid', ARGV[4], 'cycle_id', ARGV[5],
    'reason', reason, 'entry_id', ARGV[1], 'at_ms', ARGV[12]}
  for _, v in ipairs(extra or {}) do table.insert(fields, v) end
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[13], '*', unpack(fields))
end

if ARGV[2] == 'anomaly' then
  event('anomaly', ARGV[11])
  return 'anomaly'
end

local existing = redis.call('HMGET', KEYS[2], 'status', 'digest')
local taken = existing[1] and existing[1] ~= 'refused'

local function refuse(reason)
  if taken then
    -- The id is a recorded report's: its record stays as it is.
    event('refused', reason .. ' (report_id belongs to a recorded report, which is kept)')
    return 'refused'
  end
  if existing[1] == 'refused' and existing[2] == ARGV[7] and ARGV[7] ~= '' then
    return 'refused'
  end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'report_id', ARGV[3], 'uid', ARGV[4], 'cycle_id', ARGV[5],
    'data', ARGV[6], 'digest', ARGV[7], 'supersedes', ARGV[9], 'status', 'refused',
    'reason', reason, 'entry_id', ARGV[1], 'timestamp', ARGV[10], 'reported_ms', ARGV[12])
  redis.call('PEXPIRE', KEYS[2], ARGV[14])
  event('refused', reason)
  return 'refused'
end

if ARGV[2] == 'refuse' then
  return refuse(ARGV[11])
end

if taken then
  if existing[2] == ARGV[7] then
    return 'existing'
  end
  event('anomaly', 'report_id ' .. ARGV[3] .. ' was sent again with another payload; the first is kept')
  return 'anomaly'
end
if redis.call('EXISTS', KEYS[8]) == 0 then
  return refuse('unknown user ' .. ARGV[4] .. ': no credit was ever granted to this user here')
end
local cycle = redis.call('HGET', KEYS[5], 'status')
if cycle == 'verified' or cycle == 'mismatch' or cycle == 'cosigned' then
  return refuse('cycle ' .. ARGV[5] .. ' is closed: it takes no more reports')
end
if ARGV[9] ~= '' then
  local old = redis.call('HMGET', KEYS[7], 'status', 'uid', 'superseded_by')
  if not old[1] then
    return refuse('supersedes names report ' .. ARGV[9] .. ', which is not recorded here')
  end
  if old[2] ~= ARGV[4] then
    return refuse('supersedes names report ' .. ARGV[9] .. ' of another user')
  end
  if old[1] ~= 'disputed' then
    return refuse('supersedes names report ' .. ARGV[9] .. ', which is ' .. old[1] .. ', not disputed')
  end
end

redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'report_id', ARGV[3], 'uid', ARGV[4], 'cycle_id', ARGV[5],
  'data', ARGV[6], 'digest', ARGV[7], 'salt', ARGV[8], 'supersedes', ARGV[9],
  'status', 'reported', 'reason', '', 'entry_id', ARGV[1], 'timestamp', ARGV[10],
  'eod_ms', ARGV[15], 'reported_ms', ARGV[12])
redis.call('ZADD', KEYS[3], ARGV[12], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[12], ARGV[3])
redis.call('HSETNX', KEYS[5], 'status', 'open')
redis.call('HINCRBY', KEYS[5], 'reports', 1)
redis.call('HINCRBY', KEYS[5], 'undecided', 1)
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[7], 'status', 'superseded', 'superseded_by', ARGV[3])
  local old = redis.call('HMGET', KEYS[7], 'uid', 'cycle_id')
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[13], '*', 'type', 'superseded',
    'report_id', ARGV[9], 'uid', old[1], 'cycle_id', old[2], 'reason', '',
    'superseded_by', ARGV[3], 'at_ms', ARGV[12])
end
event('reported', '', {'data', ARGV[6], 'supersedes', ARGV[9], 'reported_ms', ARGV[12]})
return 'recorded'
