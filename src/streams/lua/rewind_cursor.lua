-- rewind_cursor: set a WSP follower's cursor over a stream on R back to the
-- start, but only if it still holds the value the caller saw (another
-- gateway may have moved it since). Used when the stream on R is a new one
-- (a full resync, or a stream deleted and written again): its ids may be
-- below the cursor, whatever R's clock says. Handling old entries again
-- changes nothing (every follower's scripts are idempotent).
--
-- KEYS[1] mirror:cursor:<stream>   the follower's cursor
-- ARGV[1] the cursor value the caller saw
--
-- Returns 1 if rewound, 0 if the cursor had moved.

if (redis.call('GET', KEYS[1]) or '0-0') == ARGV[1] then
  redis.call('SET', KEYS[1], '0-0')
  return 1
end
return 0
