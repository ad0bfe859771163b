-- Reads one app's set directly (while the change feed is down), and says whether Redis lost the
-- data the caller's copy was taken from: its marker is gone or different, or another server
-- answers (a new run id). Writes nothing, so it runs on a read-only replica too.
-- KEYS[1]: the set; KEYS[2]: the marker holding the data's epoch (see check.lua).
-- ARGV[1]: the epoch the caller knows ('' for none: nothing to compare); ARGV[2]: the run id it
-- knows ('' for none); ARGV[3]: 'members' (answer with the set) or 'channels' (answer for the
-- channels in ARGV[4..]).
-- Returns {lost (1/0), members} or {lost, flag per channel (1 occupied, 0 not)}.
local lost = 0
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[2]) ~= ARGV[1] then
    lost = 1
  elseif ARGV[2] ~= '' then
    local info = redis.pcall('INFO', 'server')
    if type(info) == 'string' then
      local run_id = string.match(info, 'run_id:(%w+)')
      if run_id and run_id ~= ARGV[2] then
        lost = 1
      end
    end
  end
end
if ARGV[3] == 'members' then
  return {lost, redis.call('SMEMBERS', KEYS[1])}
end
local result = {lost}
for i = 4, #ARGV do
  result[#result + 1] = redis.call('SISMEMBER', KEYS[1], ARGV[i])
end
return result
