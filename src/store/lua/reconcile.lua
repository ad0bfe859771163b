-- Makes the set equal Pusher's listing, except for channels changed by an event newer than the
-- moment the listing was requested: those happened after Pusher made its list, so they stand.
-- KEYS[1]: the set; KEYS[2]: sorted set channel -> time_ms of the last event; KEYS[3]: the
-- counter numbering published changes.
-- ARGV[1]: when the listing was requested (ms); ARGV[2]: the pub/sub channel replicas follow;
-- ARGV[3..]: the listed channels. Publishes the repairs like apply.lua. Returns
-- {added, removed, seq}.
local requested = tonumber(ARGV[1])
local listed = {}
local added, removed = {}, {}
local function newer(channel)
  local last = redis.call('ZSCORE', KEYS[2], channel)
  return last and tonumber(last) > requested
end
for i = 3, #ARGV do
  local channel = ARGV[i]
  listed[channel] = true
  if redis.call('SISMEMBER', KEYS[1], channel) == 0 and not newer(channel) then
    redis.call('SADD', KEYS[1], channel)
    redis.call('ZADD', KEYS[2], requested, channel)
    added[#added + 1] = channel
  end
end
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not listed[channel] and not newer(channel) then
    redis.call('SREM', KEYS[1], channel)
    redis.call('ZADD', KEYS[2], requested, channel)
    removed[#removed + 1] = channel
  end
end
local changes = {}
for _, channel in ipairs(added) do changes[#changes + 1] = '+' .. channel end
for _, channel in ipairs(removed) do changes[#changes + 1] = '-' .. channel end
local seq = 0
if #changes > 0 and ARGV[2] ~= '' then
  seq = redis.call('INCR', KEYS[3])
  redis.call('PUBLISH', ARGV[2], '#' .. seq .. '\n' .. table.concat(changes, '\n'))
end
return {added, removed, seq}
