-- rewind_cursor: set the WSP's cursor over the response stream on R back to
-- the start, but only if it still holds the value the caller saw (another
-- gateway may have moved it since). Used when R's response stream is a new
-- one (a full resync, or a stream deleted and written again): its ids may
-- be below the cursor, whatever R's clock says. Re-applying old responses
-- changes nothing.
--
-- KEYS[1] mirror:cursor:mirror:credit:response
-- ARGV[1] the cursor value the caller saw
--
-- Returns 1 if rewound, 0 if the cursor had moved.

if (redis.call('GET', KEYS[1]) or '0-0') == ARGV[1] then
  redis.call('SET', KEYS[1], '0-0')
  return 1
end
return 0
