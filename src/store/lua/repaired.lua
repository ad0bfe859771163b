-- Records that the set was just repaired from Pusher's listing, and tells every replica.
-- KEYS[1]: the marker holding the data's epoch (see check.lua); KEYS[2]: the epoch last repaired.
-- ARGV[1]: the pub/sub channel replicas follow.
-- A replica that kept its copy through a data loss drops it and reloads when it hears `r`.
local epoch = redis.call('GET', KEYS[1])
if epoch then
  redis.call('SET', KEYS[2], epoch)
end
redis.call('PUBLISH', ARGV[1], 'r')
return 1
