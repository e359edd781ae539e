"""The Redis ledger's Lua scripts. ``JOB`` applies a sequence of one job's ledger operations in
order, atomically; every key it touches arrives in KEYS and carries the job's hash tag
(``{job:ID}``), so on Redis Cluster each call lands on the job's shard. ``CLAIM`` and ``SETTLE``
keep the cross-job expiry index (``{ledger}`` tag), which only says which jobs a sweep should
visit. See ``ledger`` for the layout and the sweep.

Money moves with ``HINCRBY`` (exact 64-bit integers); only the budget test compares doubles,
exact below 2**53 nano-dollars (about 9 million USD of one job's figures).

``JOB`` KEYS: the job's figures (hash), its active leases by expiry (zset), its leases (hash: lease
-> ``state SEP expires_at SEP spent SEP closed_at SEP model SEP provider``), their amounts (hash:
lease -> nanos), its closed leases by closing time (zset), its totals by model (hash), its hourly
summary (hash), each writer's last applied batch (hash). ARGV: job, closed-lease retention (s),
then the operations, each an opcode and its fields: ``R lease amount ttl now default model
provider`` (reserve), ``X lease add ttl now`` (extend), ``S lease cost input output calls now``
(settle), ``L lease now`` (release), ``C cost input output calls now default model provider``
(charge), ``K lease cost input output calls now default model provider`` (consume: a charge that
also shrinks the lease by what it spent), ``D writer seq`` (first, if at all: the call is the
writer's batch ``seq``, applied at most once: a batch not above the writer's last changes nothing
and answers ``{'dup'}``), ``B budget now`` (set a budget), ``E now`` (expire due leases, forget old
closed ones), ``A now`` (expire every active lease). A budget is '' when unlimited. Returns one
list per operation: ``{'r', status, job, budget, spent, reserved, lease}``, ``{'e', end}``, ``{'n',
count, next}`` (``next``: when the job next needs a sweep, '' never) or ``{'0'}``.
"""

from __future__ import annotations

__all__ = ["CLAIM", "JOB", "SETTLE"]

JOB = r"""
-- KEYS: 1 figures, 2 active leases by expiry, 3 leases, 4 lease amounts, 5 closed leases,
-- 6 totals by model, 7 hourly summary, 8 writers' last batches (see the module docstring).
local JOB = ARGV[1]
local RETENTION = tonumber(ARGV[2])
local SEP = '\31'
local function f17(x) return string.format('%.17g', x) end
-- Exact negation of an integer's text (HINCRBY refuses "-0").
local function neg(x) if x == '0' then return '0' end return '-' .. x end

local function load(lease)
  local raw = redis.call('HGET', KEYS[3], lease)
  if not raw then return nil end
  local t = {}
  for part in string.gmatch(raw .. SEP, '(.-)' .. SEP) do t[#t + 1] = part end
  return {state = t[1], expires_at = t[2], spent = t[3], closed_at = t[4], model = t[5],
    provider = t[6]}
end

local function store(lease, r)
  redis.call('HSET', KEYS[3], lease, table.concat({r.state, r.expires_at, r.spent, r.closed_at,
    r.model, r.provider}, SEP))
end

local function answer(status, lease_nanos)
  local v = redis.call('HMGET', KEYS[1], 'budget', 'spent', 'reserved')
  if v[2] == false then return {'r', status, JOB, '0', '0', '0', tostring(lease_nanos or 0)} end
  return {'r', status, JOB, v[1], v[2], v[3], tostring(lease_nanos or 0)}
end

local function unknown_lease()
  return {'r', 'lease_closed', '', '0', '0', '0', '0'}
end

local function ensure_job(default, now)
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('HSET', KEYS[1], 'budget', default, 'spent', 0, 'reserved', 0, 'active', 0,
      'created_at', now, 'updated_at', now)
  end
end

local function fits(amount)
  local v = redis.call('HMGET', KEYS[1], 'budget', 'spent', 'reserved')
  if v[1] == '' then return true end
  return tonumber(v[1]) - tonumber(v[2]) - tonumber(v[3]) >= tonumber(amount)
end

local function add_totals(model, provider, cost, input, output, calls, now)
  local pre = model .. SEP .. provider .. SEP
  redis.call('HINCRBY', KEYS[6], pre .. 'calls', calls)
  redis.call('HINCRBY', KEYS[6], pre .. 'input', input)
  redis.call('HINCRBY', KEYS[6], pre .. 'output', output)
  redis.call('HINCRBY', KEYS[6], pre .. 'cost', cost)
  -- The hourly summary lives with the job (its own slot), not in one cross-job hot key.
  local bucket = tostring(math.floor(tonumber(now) / 3600) * 3600)
  local b = bucket .. SEP .. model .. SEP .. provider .. SEP
  redis.call('HINCRBY', KEYS[7], b .. 'calls', calls)
  redis.call('HINCRBY', KEYS[7], b .. 'input', input)
  redis.call('HINCRBY', KEYS[7], b .. 'output', output)
  redis.call('HINCRBY', KEYS[7], b .. 'cost', cost)
end

local function reserve(lease, amount, ttl, now, default, model, provider)
  local r = load(lease)
  if r then
    if r.state == 'active' then return answer('granted', redis.call('HGET', KEYS[4], lease)) end
    return answer('lease_closed')
  end
  ensure_job(default, now)
  if not fits(amount) then return answer('over_budget') end
  redis.call('HINCRBY', KEYS[1], 'reserved', amount)
  redis.call('HINCRBY', KEYS[1], 'active', 1)
  redis.call('HSET', KEYS[1], 'updated_at', now)
  local expires = f17(tonumber(now) + tonumber(ttl))
  store(lease, {state = 'active', expires_at = expires, spent = '0', closed_at = '0',
    model = model, provider = provider})
  redis.call('HSET', KEYS[4], lease, amount)
  redis.call('ZADD', KEYS[2], expires, lease)
  return answer('granted', amount)
end

local function extend(lease, add, ttl, now)
  local r = load(lease)
  if not r then return unknown_lease() end
  if r.state ~= 'active' then return answer('lease_closed') end
  if tonumber(add) > 0 and not fits(add) then
    return answer('over_budget', redis.call('HGET', KEYS[4], lease))
  end
  redis.call('HINCRBY', KEYS[1], 'reserved', add)
  redis.call('HSET', KEYS[1], 'updated_at', now)
  local amount = redis.call('HINCRBY', KEYS[4], lease, add)
  r.expires_at = f17(tonumber(now) + tonumber(ttl))
  store(lease, r)
  redis.call('ZADD', KEYS[2], r.expires_at, lease)
  return answer('granted', amount)
end

local function close(lease, state, cost, now)
  local r = load(lease)
  if not r then return 'unknown', nil end
  if r.state == 'settled' or r.state == 'released' then return 'already', nil end
  local ended = 'late'
  if r.state == 'active' then
    ended = 'closed'
    redis.call('HINCRBY', KEYS[1], 'reserved', neg(redis.call('HGET', KEYS[4], lease)))
    redis.call('HINCRBY', KEYS[1], 'active', -1)
    redis.call('ZREM', KEYS[2], lease)
  end
  redis.call('HSET', KEYS[1], 'updated_at', now)
  r.state, r.spent, r.closed_at = state, cost, now
  store(lease, r)
  redis.call('ZADD', KEYS[5], now, lease)
  return ended, r
end

local function settle(lease, cost, input, output, calls, now)
  local ended, r = close(lease, 'settled', cost, now)
  if r then
    redis.call('HINCRBY', KEYS[1], 'spent', cost)
    add_totals(r.model, r.provider, cost, input, output, calls, now)
  end
  return ended
end

local function charge(cost, input, output, calls, now, default, model, provider)
  ensure_job(default, now)
  redis.call('HSET', KEYS[1], 'updated_at', now)
  if cost ~= '0' or input ~= '0' or output ~= '0' or calls ~= '0' then
    redis.call('HINCRBY', KEYS[1], 'spent', cost)
    add_totals(model, provider, cost, input, output, calls, now)
  end
end

local function expire_due(due, closed_at)
  local n = 0
  local leases = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', due, 'WITHSCORES')
  for i = 1, #leases, 2 do
    local lease, expires = leases[i], leases[i + 1]
    redis.call('HINCRBY', KEYS[1], 'reserved', neg(redis.call('HGET', KEYS[4], lease)))
    redis.call('HINCRBY', KEYS[1], 'active', -1)
    local r = load(lease)
    r.state, r.closed_at = 'expired', closed_at or expires
    store(lease, r)
    redis.call('ZADD', KEYS[5], r.closed_at, lease)
    redis.call('ZREM', KEYS[2], lease)
    n = n + 1
  end
  return n
end

-- When the job next needs a sweep: its earliest active expiry, or when its oldest closed lease
-- is to be forgotten; '' when neither.
local function next_due()
  local best = nil
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then best = tonumber(first[2]) end
  local old = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  if old[2] then
    local at = tonumber(old[2]) + RETENTION
    if best == nil or at < best then best = at end
  end
  if best == nil then return '' end
  return f17(best)
end

local function expire(now)
  local n = expire_due(now, nil)
  local cutoff = tonumber(now) - RETENTION
  for _, lease in ipairs(redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', cutoff)) do
    local r = load(lease)
    -- A lease settled after it expired is listed at its last closing only.
    if r and r.state ~= 'active' and tonumber(r.closed_at) <= cutoff then
      redis.call('HDEL', KEYS[3], lease)
      redis.call('HDEL', KEYS[4], lease)
    end
    redis.call('ZREM', KEYS[5], lease)
  end
  return n
end

local out = {}
local i = 3
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'R' then
    out[#out + 1] = reserve(ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6],
      ARGV[i+7])
    i = i + 8
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
      ARGV[i+8])
    out[#out + 1] = {'0'}
    i = i + 9
  elseif op == 'K' then
    -- consume: the job spends cost (as a charge), and the lease (a replica's block of the
    -- job), if still active, holds that much less: the spend comes out of what it reserved,
    -- never counted twice.
    local lease, cost = ARGV[i+1], ARGV[i+2]
    charge(cost, ARGV[i+3], ARGV[i+4], ARGV[i+5], ARGV[i+6], ARGV[i+7], ARGV[i+8], ARGV[i+9])
    local r = nil
    if lease ~= '' then r = load(lease) end
    if r and r.state == 'active' then
      local held = redis.call('HGET', KEYS[4], lease)
      local take = cost
      if tonumber(cost) >= tonumber(held) then take = held end
      redis.call('HINCRBY', KEYS[4], lease, neg(take))
      redis.call('HINCRBY', KEYS[1], 'reserved', neg(take))
    end
    out[#out + 1] = {'0'}
    i = i + 10
  elseif op == 'D' then
    -- writer seq: this call is that writer's batch seq; a batch it already applied (a retry
    -- whose first try reached the server but whose answer was lost) changes nothing.
    local last = redis.call('HGET', KEYS[8], ARGV[i+1])
    if last and tonumber(ARGV[i+2]) <= tonumber(last) then return {{'dup'}} end
    redis.call('HSET', KEYS[8], ARGV[i+1], ARGV[i+2])
    redis.call('EXPIRE', KEYS[8], 604800)
    i = i + 3
  elseif op == 'B' then
    ensure_job(ARGV[i+1], ARGV[i+2])
    redis.call('HSET', KEYS[1], 'budget', ARGV[i+1], 'updated_at', ARGV[i+2])
    out[#out + 1] = {'0'}
    i = i + 3
  elseif op == 'E' then
    local n = expire(ARGV[i+1])
    out[#out + 1] = {'n', n, next_due()}
    i = i + 2
  elseif op == 'A' then
    local n = expire_due('+inf', ARGV[i+1])
    out[#out + 1] = {'n', n, next_due()}
    i = i + 2
  else
    return redis.error_reply('ERR_ARG unknown ledger operation ' .. tostring(op))
  end
end
return out
"""

CLAIM = r"""
-- KEYS: the expiry index (zset: job -> when it next needs a sweep), the last reserve of each job
-- (hash: job -> its lease id). ARGV: now, limit. Returns job, last reserve pairs of the due jobs.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, job in ipairs(due) do
  out[#out + 1] = job
  out[#out + 1] = redis.call('HGET', KEYS[2], job) or ''
end
return out
"""

SETTLE = r"""
-- KEYS: as CLAIM. ARGV: per job four fields: job, 'c' (claimed) or 'o' (only lower), the last
-- reserve seen at the claim, and when the job next needs a sweep ('' never). A claimed job with
-- no reserve since the claim (each reserve writes its own lease id, so any reserve changes it)
-- takes its new time, or leaves the index (and the hash); otherwise the index only ever moves
-- earlier, so a lease reserved meanwhile is never lost.
for i = 1, #ARGV, 4 do
  local job, mode, seen, nxt = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if mode == 'c' and (redis.call('HGET', KEYS[2], job) or '') == seen then
    if nxt == '' then
      redis.call('ZREM', KEYS[1], job)
      redis.call('HDEL', KEYS[2], job)
    else
      redis.call('ZADD', KEYS[1], nxt, job)
    end
  elseif nxt ~= '' then
    redis.call('ZADD', KEYS[1], 'LT', nxt, job)
  end
end
return 0
"""
