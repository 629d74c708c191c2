"""The Lua script of :class:`llmds.dist.RedisAdmissionController` (one per configuration).

``SCRIPT % {"rr": ..., "kr": ..., "rb": ..., "kb": ...}`` (request and token rates
per second, request and token bursts, as Python ``repr`` literals) is the script a
controller loads; see the comment below for its keys, arguments and replies.
"""

from __future__ import annotations

__all__ = ["SCRIPT"]

# The script is generated per configuration (the rates and bursts are literals: fewer
# arguments to send and parse). KEYS[1]: the bucket, 32 bytes struct-packed (request
# level, token level, server time in s of those levels, server time in s at which
# the key expires). ARGV: mode ('t' take, 'a' ask, 'c' charge, 'p' peek), needed
# requests, needed tokens, then for a lease the wanted requests and tokens, then
# given-back requests and tokens (absent = none).
# Replies: {code, retry-after in us} (take/ask/charge); a lease grant adds {granted
# requests, granted tokens as %.17g}; code 1 adds the request bucket's own wait in us
# as the third entry; peek replies {0, 0, request level, token level} as %.17g.
# Server time per admitted call (Redis 7.0, median of 5 x 3,000): 7.4 us, against
# 9.2 us when every write also sets PX, and 16.8 us for a first version that kept a
# hash (HMGET + HSET + PEXPIRE); limits' fixed window script takes ~4-5 us.
# So the expiry is pushed 60 s past "full again" and only refreshed when it would
# come sooner (a missing key is a full bucket, so it must never expire earlier); a
# rejection writes nothing (refilling is path-independent), and neither does 'ask'.
SCRIPT = """
local min, max, ceil = math.min, math.max, math.ceil
local rr, kr, rb, kb = %(rr)s, %(kr)s, %(rb)s, %(kb)s
local mode = ARGV[1]
local nr, nk = tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) * 1e-6
local s = redis.call('GET', KEYS[1])
local r, k, last, expires = rb, kb, now, 0
if s then r, k, last, expires = struct.unpack('<dddd', s) end
local dt = now - last
local dirty = dt < 0
if dt > 0 then
  r = min(rb, r + dt * rr)
  k = min(kb, k + dt * kr)
end
local give = tonumber(ARGV[6])
if give then
  r = min(rb, r + give)
  k = min(kb, k + tonumber(ARGV[7]))
  dirty = true
end
local code, retry, extra = 0, 0, nil
if mode == 'c' then
  r = r - nr
  k = min(kb, k - nk)
  dirty = true
elseif mode ~= 'p' then
  if nk > kb then
    code = 3
  elseif r < nr then
    code = 1
    retry = (nr - r) / rr
    extra = {code, 0, ceil(retry * 1e6)}
    if k < nk then retry = max(retry, (nk - k) / kr) end
  elseif k < nk then
    code = 2
    retry = (nk - k) / kr
  elseif mode == 't' then
    local tr, tk = nr, nk
    local wr = tonumber(ARGV[4])
    if wr then
      tr = max(nr, min(wr, math.floor(r)))
      tk = max(nk, min(tonumber(ARGV[5]), k))
      extra = {0, 0, tr, string.format('%%.17g', tk)}
    end
    r = r - tr
    k = k - tk
    dirty = true
  end
end
if dirty then
  local full = now + max((rb - r) / rr, (kb - k) / kr, 0)
  if expires < full + 1 then
    expires = full + 60
    redis.call('SET', KEYS[1], struct.pack('<dddd', r, k, now, expires), 'PX',
               ceil((expires - now) * 1000))
  else
    redis.call('SET', KEYS[1], struct.pack('<dddd', r, k, now, expires), 'KEEPTTL')
  end
end
if mode == 'p' then
  return {0, 0, string.format('%%.17g', r), string.format('%%.17g', k)}
end
if extra then
  extra[2] = ceil(retry * 1e6)
  return extra
end
return {code, ceil(retry * 1e6)}
"""
