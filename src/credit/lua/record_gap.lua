-- record_gap: the exchange's response stream on R lost entries after the
-- WSP's cursor (trimmed before they were applied): record that loudly and
-- move the cursor to where the stream goes on, in one atomic step, unless
-- another gateway moved the cursor meanwhile. The decisions in the gap are
-- lost to this WSP: their requests stay pending (health says so) until each
-- is decided again (ResolveCreditAnomaly: redeliver, or reject).
--
-- KEYS[1] mirror:cursor:mirror:credit:response  last response id handled
-- KEYS[2] mirror:credit:response-gap            the open gap (hash)
-- KEYS[3] mirror:credit:events                  credit event log
-- ARGV[1] the cursor the caller saw   ARGV[2] the cursor to go on from
-- ARGV[3] description   ARGV[4] now, unix milliseconds
-- ARGV[5] approximate MAXLEN of the event log
--
-- Returns 1 if recorded, 0 if the cursor had moved (nothing written). A
-- gap already open keeps its first detection time: requests undecided then
-- are the ones that may have lost their decision.

if (redis.call('GET', KEYS[1]) or '0-0') ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSETNX', KEYS[2], 'detected_ms', ARGV[4])
redis.call('HSET', KEYS[2], 'description', ARGV[3])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'type', 'anomaly', 'request_id', '',
  'uid', '', 'asset', '', 'c_change', '', 'ci', '', 'reason', ARGV[3], 'at_ms', ARGV[4])
return 1
