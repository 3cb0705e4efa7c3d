-- Partition lease: renew. KEYS and ARGV as in aggregator/lease.py.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
