-- Applies occupancy events in order, each only if it is at least as new as the last event
-- applied to its channel and inside the retention window. One atomic step.
-- On equal time_ms from different requests occupied wins: a vacated stamped with the same time
-- as the occupied the set holds is stale, since Pusher's order between the two is unknown and a
-- watched channel wrongly vacant loses updates, while one wrongly occupied costs one publish.
-- Within one batch (one webhook) events apply in the order listed.
-- KEYS[1]: the set of occupied channels; KEYS[2]: sorted set channel -> time_ms of the last event;
-- KEYS[3]: the counter numbering published changes.
-- ARGV[1]: retention in ms; ARGV[2]: the pub/sub channel replicas follow ("" for none); then
-- triples: "1" (occupied) or "0" (vacated), time_ms, channel.
-- Publishes what was applied ("#seq" then "+name" / "-name" lines) so every replica's copy
-- follows in Redis's order. Returns the change's sequence number (0 when nothing was published),
-- then one flag per event: 1 applied, 0 stale.
local now = redis.call('TIME')
local horizon = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. horizon)
local result = {}
local changes = {}
local touched = {}
for i = 3, #ARGV, 3 do
  local t = tonumber(ARGV[i + 1])
  local channel = ARGV[i + 2]
  local last = redis.call('ZSCORE', KEYS[2], channel)
  if last then last = tonumber(last) end
  local stale = t < horizon or (last and t < last)
  if not stale and last and t == last and ARGV[i] == '0' and not touched[channel] then
    stale = redis.call('SISMEMBER', KEYS[1], channel) == 1
  end
  if stale then
    result[#result + 1] = 0
  else
    if ARGV[i] == '1' then
      redis.call('SADD', KEYS[1], channel)
      changes[#changes + 1] = '+' .. channel
    else
      redis.call('SREM', KEYS[1], channel)
      changes[#changes + 1] = '-' .. channel
    end
    redis.call('ZADD', KEYS[2], t, channel)
    touched[channel] = true
    result[#result + 1] = 1
  end
end
local seq = 0
if #changes > 0 and ARGV[2] ~= '' then
  seq = redis.call('INCR', KEYS[3])
  redis.call('PUBLISH', ARGV[2], '#' .. seq .. '\n' .. table.concat(changes, '\n'))
end
table.insert(result, 1, seq)
return result
