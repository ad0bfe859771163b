-- Applies one chunk of a reconciliation: the caller compared Pusher's listing with the set and
-- sends what should change, a chunk at a time, so no single call holds Redis for long. Each
-- change is checked again here, atomically: it is made only if the set still differs and no
-- event newer than the moment the listing was requested touched the channel (such an event
-- happened after Pusher made its list, so it stands).
-- KEYS[1]: the set; KEYS[2]: sorted set channel -> time_ms of the last event; KEYS[3]: the
-- counter numbering published changes.
-- ARGV[1]: when the listing was requested (ms, the gate's clock); ARGV[2]: the pub/sub channel
-- replicas follow ("" for none); ARGV[3]: how far ahead of Redis's clock that time may be (ms),
-- like a webhook's time_ms: a gate whose clock runs fast would otherwise stamp repairs in the
-- future and make every real event older than them; ARGV[4..]: "+name" for a listed channel the
-- set should hold, "-name" for one it should not.
-- Publishes the repairs like apply.lua. Returns {added, removed, seq}.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local requested = math.min(tonumber(ARGV[1]), now_ms + tonumber(ARGV[3]))
local added, removed = {}, {}
local function newer(channel)
  local last = redis.call('ZSCORE', KEYS[2], channel)
  return last and tonumber(last) > requested
end
for i = 4, #ARGV do
  local op = string.sub(ARGV[i], 1, 1)
  local channel = string.sub(ARGV[i], 2)
  local member = redis.call('SISMEMBER', KEYS[1], channel) == 1
  if op == '+' and not member and not newer(channel) then
    redis.call('SADD', KEYS[1], channel)
    redis.call('ZADD', KEYS[2], requested, channel)
    added[#added + 1] = channel
  elseif op == '-' and member and not newer(channel) then
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
