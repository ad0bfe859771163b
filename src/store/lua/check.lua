-- Checks that Redis still holds what this gate wrote, and reads the set or publishes a heartbeat.
-- KEYS[1]: the set; KEYS[2]: the counter numbering published changes; KEYS[3]: the marker holding
-- this data's epoch (a random id); KEYS[4]: the epoch last repaired from Pusher's listing.
-- ARGV[1]: 'reload' (answer with the set) or 'beat' (publish a heartbeat); ARGV[2]: the epoch
-- the caller knows ('' for none); ARGV[3]: the server run id the caller knows ('' for none);
-- ARGV[4]: a fresh random id, the new epoch if one is needed; ARGV[5]: the pub/sub channel
-- replicas follow; ARGV[6]: the caller's replica id.
--
-- A missing marker means the data was lost (a restart without persistence, FLUSHALL, a failover
-- to a replica that never had it). A different run id with the marker unchanged means another
-- server answers with data that may lack the latest writes (a restart from an older snapshot, a
-- failover to a lagging replica): the epoch is replaced so that every replica, and the reconcile
-- lock, see the loss. INFO may be denied by an ACL; then only the marker is checked.
-- Returns {epoch, run_id, seq, repaired (1/0)} and, for 'reload', the set's members: the set and
-- its sequence number are read in one atomic step.
local info = redis.pcall('INFO', 'server')
local run_id = ''
if type(info) == 'string' then
  run_id = string.match(info, 'run_id:(%w+)') or ''
end
local epoch = redis.call('GET', KEYS[3])
if not epoch or (ARGV[3] ~= '' and run_id ~= '' and run_id ~= ARGV[3] and epoch == ARGV[2]) then
  epoch = ARGV[4]
  redis.call('SET', KEYS[3], epoch)
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local repaired = 0
if redis.call('GET', KEYS[4]) == epoch then
  repaired = 1
end
if ARGV[1] == 'beat' then
  redis.call('PUBLISH', ARGV[5], 'h ' .. ARGV[6] .. ' ' .. seq .. ' ' .. epoch)
  return {epoch, run_id, seq, repaired}
end
return {epoch, run_id, seq, repaired, redis.call('SMEMBERS', KEYS[1])}
