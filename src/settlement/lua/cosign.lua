-- cosign: add the WSP's countersignature to a verified cycle's checkpoint,
-- once every report of the cycle is decided, in one atomic step with its
-- event. The caller signed the exchange's checkpoint it read (ARGV[2]);
-- nothing is written unless that is still the cycle's.
--
-- KEYS[1] mirror:settlement:cycle:<cycle_id>   the cycle (hash)
-- KEYS[2] mirror:settlement:events             settlement event log
-- KEYS[3] mirror:settlement:cosign-due         cycles due (zset)
-- ARGV[1] cycle_id   ARGV[2] the exchange's checkpoint the caller signed
-- ARGV[3] the checkpoint with both signatures
-- ARGV[4] now, unix ms   ARGV[5] approximate MAXLEN of the event log
--
-- Returns "cosigned", or why not: "undecided" (a report is still
-- REPORTED), "stale" (another checkpoint), or the cycle's status
-- ("cosigned" already, "mismatch", "none"); all but "stale" take the
-- cycle off the due list.

local c = redis.call('HMGET', KEYS[1], 'status', 'undecided', 'exchange_checkpoint', 'size')
if c[1] ~= 'verified' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return c[1] or 'none'
end
if tonumber(c[2] or '0') > 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
  return 'undecided'
end
if c[3] ~= ARGV[2] then
  return 'stale'
end
redis.call('HSET', KEYS[1], 'checkpoint', ARGV[3], 'status', 'cosigned', 'cosigned_ms', ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'type', 'cycle_cosigned',
  'cycle_id', ARGV[1], 'report_id', '', 'uid', '', 'reason', '', 'size', c[4] or '0',
  'at_ms', ARGV[4])
return 'cosigned'
