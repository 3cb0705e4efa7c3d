-- The next entries of a stream after an id, as raw lists (no client-side reply parsing).
-- KEYS[1] stream; ARGV[1] exclusive start ('(' .. id), ARGV[2] count.
return redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
