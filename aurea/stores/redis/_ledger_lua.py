"""The Redis ledger's one Lua script: a sequence of ledger operations (``LedgerStore.apply``)
applied in order, atomically, on the server. Every method of ``RedisLedgerStore`` is this script
with one operation, so there is one implementation of the lease rules to get right.

Money moves with ``HINCRBY`` (exact 64-bit integers); only the budget test compares doubles,
exact below 2**53 nano-dollars (about 9 million USD of one job's figures).

ARGV: prefix, closed-lease retention (s), then the operations, each an opcode and its fields:
``R job lease amount ttl now default model provider`` (reserve), ``X lease add ttl now``
(extend), ``S lease cost input output calls now`` (settle), ``L lease now`` (release),
``C job cost input output calls now default model provider`` (charge), ``E now`` (expire),
``A now`` (expire all), ``B job budget now`` (set a budget), ``K job lease cost input output
calls now default model provider`` (consume: a charge that also shrinks the lease by what it
spent). A budget is '' when unlimited.
Returns one list per operation: ``{'r', status, job, budget, spent, reserved, lease}``,
``{'e', end}``, ``{'n', count}`` or ``{'0'}``.
"""

from __future__ import annotations

__all__ = ["APPLY"]

APPLY = r"""
local P = ARGV[1]
local RETENTION = tonumber(ARGV[2])
local SEP = '\31'
local function jkey(job) return P .. ':led:{job:' .. job .. '}' end
local function lkey(job, lease) return jkey(job) .. ':l:' .. lease end
local LEASES = P .. ':led:{ledger}:leases'
local JOBS = P .. ':led:{ledger}:jobs'
local EXP = P .. ':led:{ledger}:exp'
local CLOSED = P .. ':led:{ledger}:closed'
local function f17(x) return string.format('%.17g', x) end
-- Exact negation of an integer's text (HINCRBY refuses "-0").
local function neg(x) if x == '0' then return '0' end return '-' .. x end

local function answer(status, job, lease_nanos)
  local v = redis.call('HMGET', jkey(job), 'budget', 'spent', 'reserved')
  if job == '' or v[2] == false then
    return {'r', status, job, '0', '0', '0', tostring(lease_nanos or 0)}
  end
  return {'r', status, job, v[1], v[2], v[3], tostring(lease_nanos or 0)}
end

local function ensure_job(job, default, now)
  local k = jkey(job)
  if redis.call('EXISTS', k) == 0 then
    redis.call('HSET', k, 'budget', default, 'spent', 0, 'reserved', 0, 'active', 0,
      'created_at', now, 'updated_at', now)
    redis.call('ZADD', JOBS, 0, job)
  end
  return k
end

local function fits(k, amount)
  local v = redis.call('HMGET', k, 'budget', 'spent', 'reserved')
  if v[1] == '' then return true end
  return tonumber(v[1]) - tonumber(v[2]) - tonumber(v[3]) >= tonumber(amount)
end

local function earliest(job)
  local first = redis.call('ZRANGE', jkey(job) .. ':exp', 0, 0, 'WITHSCORES')
  if first[1] then
    redis.call('ZADD', EXP, first[2], job)
  else
    redis.call('ZREM', EXP, job)
  end
end

local function add_totals(job, model, provider, cost, input, output, calls, now)
  local m = jkey(job) .. ':m'
  local pre = model .. SEP .. provider .. SEP
  redis.call('HINCRBY', m, pre .. 'calls', calls)
  redis.call('HINCRBY', m, pre .. 'input', input)
  redis.call('HINCRBY', m, pre .. 'output', output)
  redis.call('HINCRBY', m, pre .. 'cost', cost)
  -- The hourly summary lives with the job (its own slot), not in one cross-job hot key.
  local s = jkey(job) .. ':sum'
  local bucket = tostring(math.floor(tonumber(now) / 3600) * 3600)
  local b = bucket .. SEP .. model .. SEP .. provider .. SEP
  redis.call('HINCRBY', s, b .. 'calls', calls)
  redis.call('HINCRBY', s, b .. 'input', input)
  redis.call('HINCRBY', s, b .. 'output', output)
  redis.call('HINCRBY', s, b .. 'cost', cost)
end

local function reserve(job, lease, amount, ttl, now, default, model, provider)
  local owner = redis.call('HGET', LEASES, lease)
  if owner then
    local st = redis.call('HMGET', lkey(owner, lease), 'state', 'amount')
    if st[1] == 'active' then return answer('granted', owner, st[2]) end
    return answer('lease_closed', owner)
  end
  local k = ensure_job(job, default, now)
  if not fits(k, amount) then return answer('over_budget', job) end
  redis.call('HINCRBY', k, 'reserved', amount)
  redis.call('HINCRBY', k, 'active', 1)
  redis.call('HSET', k, 'updated_at', now)
  local expires = f17(tonumber(now) + tonumber(ttl))
  redis.call('HSET', lkey(job, lease), 'model', model, 'provider', provider, 'amount', amount,
    'expires_at', expires, 'state', 'active', 'spent', 0, 'closed_at', 0)
  redis.call('HSET', LEASES, lease, job)
  redis.call('ZADD', jkey(job) .. ':exp', expires, lease)
  redis.call('ZADD', EXP, 'LT', expires, job)
  return answer('granted', job, amount)
end

local function extend(lease, add, ttl, now)
  local job = redis.call('HGET', LEASES, lease)
  if not job then return answer('lease_closed', '') end
  local lk = lkey(job, lease)
  local st = redis.call('HMGET', lk, 'state', 'amount')
  if st[1] ~= 'active' then return answer('lease_closed', job) end
  local k = jkey(job)
  if tonumber(add) > 0 and not fits(k, add) then return answer('over_budget', job, st[2]) end
  redis.call('HINCRBY', k, 'reserved', add)
  redis.call('HSET', k, 'updated_at', now)
  local amount = redis.call('HINCRBY', lk, 'amount', add)
  local expires = f17(tonumber(now) + tonumber(ttl))
  redis.call('HSET', lk, 'expires_at', expires)
  redis.call('ZADD', jkey(job) .. ':exp', expires, lease)
  earliest(job)
  return answer('granted', job, redis.call('HGET', lk, 'amount'))
end

local function close(lease, state, cost, now)
  local job = redis.call('HGET', LEASES, lease)
  if not job then return 'unknown', nil end
  local lk = lkey(job, lease)
  local st = redis.call('HMGET', lk, 'state', 'amount')
  if st[1] == 'settled' or st[1] == 'released' then return 'already', nil end
  local k = jkey(job)
  local ended = 'late'
  if st[1] == 'active' then
    ended = 'closed'
    redis.call('HINCRBY', k, 'reserved', neg(st[2]))
    redis.call('HINCRBY', k, 'active', -1)
    redis.call('ZREM', jkey(job) .. ':exp', lease)
    earliest(job)
  end
  redis.call('HSET', k, 'updated_at', now)
  redis.call('HSET', lk, 'state', state, 'spent', cost, 'closed_at', now)
  redis.call('ZADD', CLOSED, now, job .. SEP .. lease)
  return ended, job
end

local function settle(lease, cost, input, output, calls, now)
  local ended, job = close(lease, 'settled', cost, now)
  if job then
    redis.call('HINCRBY', jkey(job), 'spent', cost)
    local lp = redis.call('HMGET', lkey(job, lease), 'model', 'provider')
    add_totals(job, lp[1], lp[2], cost, input, output, calls, now)
  end
  return ended
end

local function charge(job, cost, input, output, calls, now, default, model, provider)
  local k = ensure_job(job, default, now)
  redis.call('HSET', k, 'updated_at', now)
  if cost ~= '0' or input ~= '0' or output ~= '0' or calls ~= '0' then
    redis.call('HINCRBY', k, 'spent', cost)
    add_totals(job, model, provider, cost, input, output, calls, now)
  end
end

local function expire_due(due, closed_at)
  local n = 0
  local jobs = redis.call('ZRANGEBYSCORE', EXP, '-inf', due)
  for _, job in ipairs(jobs) do
    local ek = jkey(job) .. ':exp'
    local k = jkey(job)
    local leases = redis.call('ZRANGEBYSCORE', ek, '-inf', due, 'WITHSCORES')
    for i = 1, #leases, 2 do
      local lease, expires = leases[i], leases[i + 1]
      local lk = lkey(job, lease)
      local amount = redis.call('HGET', lk, 'amount')
      redis.call('HINCRBY', k, 'reserved', neg(amount))
      redis.call('HINCRBY', k, 'active', -1)
      local at = closed_at or expires
      redis.call('HSET', lk, 'state', 'expired', 'closed_at', at)
      redis.call('ZADD', CLOSED, at, job .. SEP .. lease)
      redis.call('ZREM', ek, lease)
      n = n + 1
    end
    earliest(job)
  end
  return n
end

local function expire(now)
  local n = expire_due(now, nil)
  local cutoff = tonumber(now) - RETENTION
  local old = redis.call('ZRANGEBYSCORE', CLOSED, '-inf', cutoff)
  for _, member in ipairs(old) do
    local cut = string.find(member, SEP, 1, true)
    local job, lease = string.sub(member, 1, cut - 1), string.sub(member, cut + 1)
    local lk = lkey(job, lease)
    local st = redis.call('HMGET', lk, 'state', 'closed_at')
    -- A lease settled after it expired is listed at its last closing only.
    if st[1] and st[1] ~= 'active' and tonumber(st[2]) <= cutoff then
      redis.call('DEL', lk)
      redis.call('HDEL', LEASES, lease)
    end
    redis.call('ZREM', CLOSED, member)
  end
  return n
end

local out = {}
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'R' then
    out[#out + 1] = reserve(ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6],
      ARGV[i+7], ARGV[i+8])
    i = i + 9
  elseif op == 'X' then
    out[#out + 1] = extend(ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4])
    i = i + 5
  elseif op == 'S' then
    out[#out + 1] = {'e', settle(ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5],
      ARGV[i+6])}
    i = i + 7
  elseif op == 'L' then
    local ended = close(ARGV[i+1], 'released', 0, ARGV[i+2])
    out[#out + 1] = {'e', ended}
    i = i + 3
  elseif op == 'C' then
    charge(ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6], ARGV[i+7],
      ARGV[i+8], ARGV[i+9])
    out[#out + 1] = {'0'}
    i = i + 10
  elseif op == 'K' then
    -- consume: job lease cost input output calls now default model provider. The job spends
    -- cost (as a charge), and the lease (a replica's block of the job), if still active, holds
    -- that much less: the spend comes out of what it reserved, never counted twice.
    local job, lease, cost = ARGV[i+1], ARGV[i+2], ARGV[i+3]
    charge(job, cost, ARGV[i+4], ARGV[i+5], ARGV[i+6], ARGV[i+7], ARGV[i+8], ARGV[i+9],
      ARGV[i+10])
    if lease ~= '' and redis.call('HGET', LEASES, lease) == job then
      local lk = lkey(job, lease)
      local st = redis.call('HMGET', lk, 'state', 'amount')
      if st[1] == 'active' then
        local take = cost
        if tonumber(cost) >= tonumber(st[2]) then take = st[2] end
        redis.call('HINCRBY', lk, 'amount', neg(take))
        redis.call('HINCRBY', jkey(job), 'reserved', neg(take))
      end
    end
    out[#out + 1] = {'0'}
    i = i + 11
  elseif op == 'B' then
    local k = ensure_job(ARGV[i+1], ARGV[i+2], ARGV[i+3])
    redis.call('HSET', k, 'budget', ARGV[i+2], 'updated_at', ARGV[i+3])
    out[#out + 1] = {'0'}
    i = i + 4
  elseif op == 'E' then
    out[#out + 1] = {'n', expire(ARGV[i+1])}
    i = i + 2
  elseif op == 'A' then
    out[#out + 1] = {'n', expire_due('+inf', ARGV[i+1])}
    i = i + 2
  else
    return redis.error_reply('ERR_ARG unknown ledger operation ' .. tostring(op))
  end
end
return out
"""
