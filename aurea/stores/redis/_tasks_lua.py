"""The Redis task queue's Lua script: every ``TaskQueueStore`` write is one call of it (one
operation name in ARGV), so each is atomic on the server. See ``tasks`` for the layout.

Every key arrives in KEYS, in this order (``K_*`` below): the records hash, the submission
counter, the submission index, the idempotency keys, the counts, the lease index, the finished
index, and for the operations that touch one pool, that pool's ready set and run stream.
ARGV: aging_s_per_priority, operation, then the operation's fields. A record is the JSON of an
object whose values are all strings (cjson writes numbers with only 14 significant digits);
records come back as that JSON. An operation on an existing task quotes the pool its caller
read and answers -1 when the task is in another pool (the caller reads again).
"""

from __future__ import annotations

__all__ = ["TASKS"]

TASKS = r"""
local K_REC, K_SEQ, K_ALL, K_IDEM, K_COUNTS, K_LEASES, K_FINISHED, K_READY, K_RUN =
  1, 2, 3, 4, 5, 6, 7, 8, 9
local AGING = tonumber(ARGV[1])
local OP = ARGV[2]
local A = {}
for i = 3, #ARGV do A[#A + 1] = ARGV[i] end
local SEP = '\31'
local GROUP = 'workers'
local MOVED = -1
local LEASE_EXPIRED = 'lease expired: the worker holding the task stopped renewing it'
local DEADLINE_EXCEEDED = 'deadline exceeded before the task started'
local function f17(x) return string.format('%.17g', x) end
local function int(x) return string.format('%d', x) end

local function load(id)
  local raw = redis.call('HGET', KEYS[K_REC], id)
  if not raw then return nil end
  return cjson.decode(raw)
end

local function save(t)
  local raw = cjson.encode(t)
  redis.call('HSET', KEYS[K_REC], t.task_id, raw)
  return raw
end

local function member(t) return string.format('%020d', tonumber(t.seq)) .. ':' .. t.task_id end

local function count(pool, state, by)
  redis.call('HINCRBY', KEYS[K_COUNTS], pool .. SEP .. state, by)
end

local function set_state(t, state)
  if t.state ~= state then
    count(t.pool, t.state, -1)
    count(t.pool, state, 1)
  end
  t.state = state
end

local function end_attempt(t)
  -- The attempt's delivery leaves its holder's pending list (XACK) and the stream.
  if t.entry ~= '' then
    redis.call('XACK', KEYS[K_RUN], GROUP, t.entry)
    redis.call('XDEL', KEYS[K_RUN], t.entry)
    t.entry = ''
  end
  redis.call('ZREM', KEYS[K_LEASES], t.task_id)
end

local function finish(t, state, now, err, result)
  end_attempt(t)
  redis.call('ZREM', KEYS[K_READY], member(t))
  set_state(t, state)
  t.lease_until, t.updated_at, t.finished_at, t.result = '', now, now, result or ''
  if err then t.error = err end
  redis.call('ZADD', KEYS[K_FINISHED], now, t.task_id)
end

local function queue(t, available_at, rank, err, now)
  end_attempt(t)
  set_state(t, 'queued')
  t.available_at, t.rank, t.lease_until, t.error, t.updated_at = available_at, rank, '', err, now
  redis.call('ZADD', KEYS[K_READY], rank, member(t))
end

local function reap(pool, now)
  -- Expired leases of this pool go back to the queue (or end); the pools of other expired
  -- leases are returned, for the caller to reap with their keys.
  local others, out = {}, {}
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[K_LEASES], '-inf', now)) do
    local t = load(id)
    if not t or t.state ~= 'running' then
      redis.call('ZREM', KEYS[K_LEASES], id)
    elseif t.pool ~= pool then
      if not others[t.pool] then
        others[t.pool] = true
        out[#out + 1] = t.pool
      end
    else
      if t.cancel_requested == '1' then
        finish(t, 'cancelled', now, LEASE_EXPIRED)
      elseif tonumber(t.attempts) >= tonumber(t.max_attempts) then
        finish(t, 'failed', now, LEASE_EXPIRED)
      else
        queue(t, t.lease_until, t.rank, LEASE_EXPIRED, now)
      end
      save(t)
    end
  end
  return out
end

local function running(t, attempt)
  return t.state == 'running' and t.attempts == attempt
end

if OP == 'enqueue' then
  -- A: id kind pool payload priority job key max_attempts deadline now
  local id, pool, key, now = A[1], A[3], A[7], A[10]
  local raw = redis.call('HGET', KEYS[K_REC], id)
  if not raw and key ~= '' then
    local other = redis.call('HGET', KEYS[K_IDEM], key)
    if other then raw = redis.call('HGET', KEYS[K_REC], other) end
  end
  if raw then return {0, raw} end
  local seq = redis.call('INCR', KEYS[K_SEQ])
  local t = {
    task_id = id, kind = A[2], pool = pool, payload = A[4], priority = A[5], job_id = A[6],
    idempotency_key = key, max_attempts = A[8], deadline = A[9], state = 'queued',
    seq = int(seq), rank = f17(tonumber(now) - tonumber(A[5]) * AGING), attempts = '0',
    worker_id = '', lease_until = '', available_at = now, cancel_requested = '0',
    result = '', error = '', created_at = now, updated_at = now, finished_at = '', entry = '',
  }
  raw = save(t)
  if key ~= '' then redis.call('HSET', KEYS[K_IDEM], key, id) end
  redis.call('ZADD', KEYS[K_ALL], seq, id)
  redis.call('ZADD', KEYS[K_READY], t.rank, member(t))
  count(pool, 'queued', 1)
  return {1, raw}

elseif OP == 'claim' then
  -- A: pool worker lease_s now limit. The caller created the group and reads the new entries
  -- as the worker (XREADGROUP) in the same MULTI/EXEC.
  local pool, worker, now, limit = A[1], A[2], tonumber(A[4]), tonumber(A[5])
  local others = reap(pool, A[4])
  local claimed = {}
  local offset = 0
  while #claimed < limit do
    local batch = redis.call('ZRANGE', KEYS[K_READY], offset, offset + 99)
    if #batch == 0 then break end
    local kept = 0
    for _, m in ipairs(batch) do
      if #claimed >= limit then break end
      local t = load(string.sub(m, 22))
      local deadline = tonumber(t.deadline)
      if tonumber(t.available_at) > now then
        kept = kept + 1
      elseif deadline and deadline <= now then
        finish(t, 'failed', A[4], DEADLINE_EXCEEDED)
        save(t)
      else
        redis.call('ZREM', KEYS[K_READY], m)
        set_state(t, 'running')
        t.attempts = int(tonumber(t.attempts) + 1)
        t.lease_until = f17(now + tonumber(A[3]))
        t.worker_id, t.updated_at = worker, A[4]
        t.entry = redis.call('XADD', KEYS[K_RUN], '*', 'task', t.task_id, 'attempt', t.attempts)
        redis.call('ZADD', KEYS[K_LEASES], t.lease_until, t.task_id)
        claimed[#claimed + 1] = save(t)
      end
    end
    offset = offset + kept
  end
  return {claimed, others}

elseif OP == 'reap' then
  -- A: pool now
  reap(A[1], A[2])
  return 1

elseif OP == 'heartbeat' then
  -- A: id attempt lease_s now
  local t = load(A[1])
  if not t or not running(t, A[2]) then return 0 end
  t.lease_until, t.updated_at = f17(tonumber(A[4]) + tonumber(A[3])), A[4]
  redis.call('ZADD', KEYS[K_LEASES], t.lease_until, t.task_id)
  save(t)
  return 1

elseif OP == 'ack' then
  -- A: pool id attempt result now
  local t = load(A[2])
  if not t then return false end
  if t.pool ~= A[1] then return MOVED end
  if not running(t, A[3]) then return false end
  finish(t, 'succeeded', A[5], nil, A[4])
  return save(t)

elseif OP == 'nack' then
  -- A: pool id attempt error retry_at('' = none) now
  local err, retry_at, now = A[4], A[5], A[6]
  local t = load(A[2])
  if not t then return false end
  if t.pool ~= A[1] then return MOVED end
  if not running(t, A[3]) then return false end
  if t.cancel_requested == '1' then
    finish(t, 'cancelled', now, err)
  elseif retry_at == '' or tonumber(t.attempts) >= tonumber(t.max_attempts) then
    finish(t, 'failed', now, err)
  else
    queue(t, retry_at, f17(tonumber(retry_at) - tonumber(t.priority) * AGING), err, now)
  end
  return save(t)

elseif OP == 'cancel' then
  -- A: pool id now
  local now = A[3]
  local t = load(A[2])
  if not t then return false end
  if t.pool ~= A[1] then return MOVED end
  if t.state == 'queued' then
    finish(t, 'cancelled', now)
    return save(t)
  elseif t.state == 'running' then
    t.cancel_requested, t.updated_at = '1', now
    return save(t)
  end
  return redis.call('HGET', KEYS[K_REC], t.task_id)

elseif OP == 'purge' then
  -- A: finished_before. Finished tasks hold no pool key (no ready entry, no stream entry).
  local ids = redis.call('ZRANGEBYSCORE', KEYS[K_FINISHED], '-inf', '(' .. A[1])
  for _, id in ipairs(ids) do
    local t = load(id)
    if t then
      local key = t.idempotency_key
      if key ~= '' and redis.call('HGET', KEYS[K_IDEM], key) == id then
        redis.call('HDEL', KEYS[K_IDEM], key)
      end
      count(t.pool, t.state, -1)
      redis.call('HDEL', KEYS[K_REC], id)
    end
    redis.call('ZREM', KEYS[K_ALL], id)
    redis.call('ZREM', KEYS[K_FINISHED], id)
  end
  return #ids
end
return redis.error_reply('ERR_ARG unknown task operation ' .. tostring(OP))
"""
