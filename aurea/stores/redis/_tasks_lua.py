"""The Redis task queue's Lua script: every ``TaskQueueStore`` write is one call of it (one
operation name in ARGV), so each is atomic on the server. See ``tasks`` for the layout.

ARGV: prefix, aging_s_per_priority, operation, then the operation's fields. Records come back
as flat field/value lists (``HGETALL``)."""

from __future__ import annotations

__all__ = ["TASKS"]

TASKS = r"""
local P = ARGV[1] .. ':tq:{tasks}:'
local AGING = tonumber(ARGV[2])
local OP = ARGV[3]
local A = {}
for i = 4, #ARGV do A[#A + 1] = ARGV[i] end
local SEP = '\31'
local GROUP = 'workers'
local LEASE_EXPIRED = 'lease expired: the worker holding the task stopped renewing it'
local DEADLINE_EXCEEDED = 'deadline exceeded before the task started'
local function f17(x) return string.format('%.17g', x) end
local function tkey(id) return P .. 't:' .. id end
local function get(id, field) return redis.call('HGET', tkey(id), field) end
local function member(id) return string.format('%020d', tonumber(get(id, 'seq'))) .. ':' .. id end

local function count(pool, state, by)
  redis.call('HINCRBY', P .. 'counts', pool .. SEP .. state, by)
end

local function set_state(id, state)
  local pool, old = get(id, 'pool'), get(id, 'state')
  if old ~= state then
    count(pool, old, -1)
    count(pool, state, 1)
  end
  redis.call('HSET', tkey(id), 'state', state)
end

local function end_attempt(id)
  -- The attempt's delivery leaves its holder's pending list (XACK) and the stream.
  local entry = get(id, 'entry')
  if entry and entry ~= '' then
    local stream = P .. 'run:' .. get(id, 'pool')
    redis.call('XACK', stream, GROUP, entry)
    redis.call('XDEL', stream, entry)
    redis.call('HSET', tkey(id), 'entry', '')
  end
  redis.call('ZREM', P .. 'leases', id)
end

local function finish(id, state, now, err, result)
  end_attempt(id)
  redis.call('ZREM', P .. 'ready:' .. get(id, 'pool'), member(id))
  set_state(id, state)
  redis.call('HSET', tkey(id), 'lease_until', '', 'updated_at', now, 'finished_at', now,
    'result', result or '')
  if err then redis.call('HSET', tkey(id), 'error', err) end
  redis.call('ZADD', P .. 'finished', now, id)
end

local function queue(id, available_at, rank, err, now)
  end_attempt(id)
  set_state(id, 'queued')
  redis.call('HSET', tkey(id), 'available_at', available_at, 'rank', rank, 'lease_until', '',
    'error', err, 'updated_at', now)
  redis.call('ZADD', P .. 'ready:' .. get(id, 'pool'), rank, member(id))
end

local function reap(now)
  local due = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now)
  for _, id in ipairs(due) do
    if get(id, 'cancel_requested') == '1' then
      finish(id, 'cancelled', now, LEASE_EXPIRED)
    elseif tonumber(get(id, 'attempts')) >= tonumber(get(id, 'max_attempts')) then
      finish(id, 'failed', now, LEASE_EXPIRED)
    else
      queue(id, get(id, 'lease_until'), get(id, 'rank'), LEASE_EXPIRED, now)
    end
  end
end

local function running(id, attempt)
  if redis.call('EXISTS', tkey(id)) == 0 then return false end
  return get(id, 'state') == 'running' and get(id, 'attempts') == attempt
end

if OP == 'enqueue' then
  -- A: id kind pool payload priority job key max_attempts deadline now
  local id, key, now = A[1], A[7], A[10]
  local existing = nil
  if redis.call('EXISTS', tkey(id)) == 1 then existing = id
  elseif key ~= '' then existing = redis.call('HGET', P .. 'keys', key) end
  if existing then return {0, redis.call('HGETALL', tkey(existing))} end
  local seq = redis.call('INCR', P .. 'seq')
  local rank = f17(tonumber(now) - tonumber(A[5]) * AGING)
  redis.call('HSET', tkey(id), 'task_id', id, 'kind', A[2], 'pool', A[3], 'payload', A[4],
    'priority', A[5], 'job_id', A[6], 'idempotency_key', key, 'max_attempts', A[8],
    'deadline', A[9], 'state', 'queued', 'seq', seq, 'rank', rank, 'attempts', 0,
    'worker_id', '', 'lease_until', '', 'available_at', now, 'cancel_requested', 0,
    'result', '', 'error', '', 'created_at', now, 'updated_at', now, 'finished_at', '',
    'entry', '')
  if key ~= '' then redis.call('HSET', P .. 'keys', key, id) end
  redis.call('ZADD', P .. 'all', seq, id)
  redis.call('ZADD', P .. 'ready:' .. A[3], rank, member(id))
  count(A[3], 'queued', 1)
  return {1, redis.call('HGETALL', tkey(id))}

elseif OP == 'claim' then
  -- A: pool worker lease_s now limit
  local pool, worker, now, limit = A[1], A[2], tonumber(A[4]), tonumber(A[5])
  reap(A[4])
  local ready = P .. 'ready:' .. pool
  local stream = P .. 'run:' .. pool
  pcall(redis.call, 'XGROUP', 'CREATE', stream, GROUP, '$', 'MKSTREAM')
  local claimed = {}
  local offset = 0
  while #claimed < limit do
    local batch = redis.call('ZRANGE', ready, offset, offset + 99)
    if #batch == 0 then break end
    local kept = 0
    for _, m in ipairs(batch) do
      if #claimed >= limit then break end
      local id = string.sub(m, 22)
      local deadline = tonumber(get(id, 'deadline'))
      if tonumber(get(id, 'available_at')) > now then
        kept = kept + 1
      elseif deadline and deadline <= now then
        finish(id, 'failed', A[4], DEADLINE_EXCEEDED)
      else
        redis.call('ZREM', ready, m)
        set_state(id, 'running')
        local attempts = redis.call('HINCRBY', tkey(id), 'attempts', 1)
        local lease_until = f17(now + tonumber(A[3]))
        local entry = redis.call('XADD', stream, '*', 'task', id, 'attempt', attempts)
        redis.call('HSET', tkey(id), 'worker_id', worker, 'lease_until', lease_until,
          'updated_at', A[4], 'entry', entry)
        redis.call('ZADD', P .. 'leases', lease_until, id)
        claimed[#claimed + 1] = id
      end
    end
    offset = offset + kept
  end
  if #claimed > 0 then
    -- Delivered to this worker's consumer: its pending list is what it holds.
    redis.call('XREADGROUP', 'GROUP', GROUP, worker, 'COUNT', #claimed, 'STREAMS', stream, '>')
  end
  local out = {}
  for _, id in ipairs(claimed) do out[#out + 1] = redis.call('HGETALL', tkey(id)) end
  return out

elseif OP == 'heartbeat' then
  -- A: id attempt lease_s now
  if not running(A[1], A[2]) then return 0 end
  local lease_until = f17(tonumber(A[4]) + tonumber(A[3]))
  redis.call('HSET', tkey(A[1]), 'lease_until', lease_until, 'updated_at', A[4])
  redis.call('ZADD', P .. 'leases', lease_until, A[1])
  return 1

elseif OP == 'ack' then
  -- A: id attempt result now
  if not running(A[1], A[2]) then return false end
  finish(A[1], 'succeeded', A[4], nil, A[3])
  return redis.call('HGETALL', tkey(A[1]))

elseif OP == 'nack' then
  -- A: id attempt error retry_at('' = none) now
  local id, now = A[1], A[5]
  if not running(id, A[2]) then return false end
  if get(id, 'cancel_requested') == '1' then
    finish(id, 'cancelled', now, A[3])
  elseif A[4] == '' or tonumber(get(id, 'attempts')) >= tonumber(get(id, 'max_attempts')) then
    finish(id, 'failed', now, A[3])
  else
    local rank = f17(tonumber(A[4]) - tonumber(get(id, 'priority')) * AGING)
    queue(id, A[4], rank, A[3], now)
  end
  return redis.call('HGETALL', tkey(id))

elseif OP == 'cancel' then
  -- A: id now
  local id, now = A[1], A[2]
  if redis.call('EXISTS', tkey(id)) == 0 then return false end
  local state = get(id, 'state')
  if state == 'queued' then
    finish(id, 'cancelled', now)
  elseif state == 'running' then
    redis.call('HSET', tkey(id), 'cancel_requested', 1, 'updated_at', now)
  end
  return redis.call('HGETALL', tkey(id))

elseif OP == 'purge' then
  -- A: finished_before
  local ids = redis.call('ZRANGEBYSCORE', P .. 'finished', '-inf', '(' .. A[1])
  for _, id in ipairs(ids) do
    local key = get(id, 'idempotency_key')
    if key and key ~= '' and redis.call('HGET', P .. 'keys', key) == id then
      redis.call('HDEL', P .. 'keys', key)
    end
    count(get(id, 'pool'), get(id, 'state'), -1)
    redis.call('ZREM', P .. 'all', id)
    redis.call('ZREM', P .. 'finished', id)
    redis.call('DEL', tkey(id))
  end
  return #ids
end
return redis.error_reply('ERR_ARG unknown task operation ' .. tostring(OP))
"""
