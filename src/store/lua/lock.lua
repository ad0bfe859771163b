-- Takes one app's reconcile lock unless another replica holds it for the data Redis holds now.
-- KEYS[1]: the lock; KEYS[2]: the marker holding the data's epoch (see check.lua).
-- ARGV[1]: the owner; ARGV[2]: how long to hold it (ms); ARGV[3]: a fresh random id, the epoch if
-- the marker is missing.
-- The lock records the epoch it was taken in. A lock taken before the data was lost (it survives
-- a failover to a lagging replica) guarded a round against data that is gone, so it does not
-- hold back the repair: the first replica to ask after the loss takes it, the others do not.
-- Returns 1 when taken, 0 when another replica holds it.
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
local held = redis.call('GET', KEYS[1])
local suffix = ' ' .. epoch
if held and string.sub(held, -#suffix) == suffix then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1] .. suffix, 'PX', ARGV[2])
return 1
