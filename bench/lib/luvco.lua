-- luvco: a deliberately small coroutine scheduler on top of luv, the kind a
-- luv user writes by hand. It is the "luv-co" peer of the benchmark.
--   * tasks are coroutines; a FIFO ready queue is drained from a uv idle
--     handle, until empty (so pure task switches never enter the poll phase);
--   * groups count their live children; the body waits for them;
--   * group cancellation wakes each blocked child with an error, checked at
--     its next suspension (no cancel scopes, no shielding, no deadlines);
--   * event, rendezvous channel, sleep (one uv timer per sleep), TCP streams.
local uv = require("luv")

local S = {}
local CANCEL = setmetatable({}, { __tostring = function() return "luvco: cancelled" end })
S.CANCEL = CANCEL

local ready, head, tail = {}, 1, 0
local current
local idle = uv.new_idle()
local idle_on = false
local drain

local function wake(t, v)
  t.val = v
  tail = tail + 1
  ready[tail] = t
  if not idle_on then idle_on = true; idle:start(drain) end
end

local function suspend()
  local t = current
  if t.cancelled then error(CANCEL, 0) end
  local v = coroutine.yield()
  if v == CANCEL then error(CANCEL, 0) end
  return v
end

local function finish(t, ok, err)
  if not ok and err ~= CANCEL then
    io.stderr:write("luvco: task failed: ", tostring(err), "\n",
      debug.traceback(t.co), "\n")
    os.exit(1)
  end
  local g = t.group
  if g then
    g.tasks[t] = nil
    g.live = g.live - 1
    if g.live == 0 and g.waiter then
      local w = g.waiter
      g.waiter = nil
      wake(w)
    end
  end
end

function drain()
  while head <= tail do
    local t = ready[head]
    ready[head] = nil
    head = head + 1
    if head > tail then head, tail = 1, 0 end -- keep the queue's indices small
    if coroutine.status(t.co) == "suspended" then -- not if it died meanwhile
      local v = t.val
      t.val = nil
      current = t
      local ok, err = coroutine.resume(t.co, v)
      current = nil
      if coroutine.status(t.co) == "dead" then finish(t, ok, err) end
    end
  end
  head, tail = 1, 0
  idle:stop()
  idle_on = false
end

local function new_task(fn, group, ...)
  local t = { group = group }
  if select("#", ...) == 0 then
    t.co = coroutine.create(fn)
  else
    local args = table.pack(...)
    t.co = coroutine.create(function() return fn(table.unpack(args, 1, args.n)) end)
  end
  return t
end

-- Run fn as the root task until the loop has nothing left to do.
function S.run(fn, ...)
  wake(new_task(fn, nil, ...))
  uv.run()
end

-- Groups -------------------------------------------------------------------
local Group = {}
Group.__index = Group

function Group:spawn(fn, ...)
  local t = new_task(fn, self, ...)
  self.live = self.live + 1
  self.tasks[t] = true
  wake(t)
  return t
end

function Group:cancel()
  for t in pairs(self.tasks) do
    t.cancelled = true
    if t.blocker then
      local undo = t.blocker
      t.blocker = nil
      undo()
      wake(t, CANCEL)
    end
  end
end

function S.group(body)
  local g = setmetatable({ live = 0, tasks = {} }, Group)
  body(g)
  while g.live > 0 do
    g.waiter = current
    coroutine.yield() -- the group body itself is never cancelled here
  end
end

-- Sleeping -------------------------------------------------------------------
function S.sleep(seconds)
  local t = current
  if seconds <= 0 then
    wake(t)
    return suspend()
  end
  local timer = uv.new_timer()
  timer:start(math.floor(seconds * 1000 + 0.5), 0, function()
    timer:close()
    t.blocker = nil
    wake(t)
  end)
  t.blocker = function() timer:stop(); timer:close() end
  return suspend()
end

function S.sleep_forever()
  current.blocker = function() end
  return suspend()
end

-- Event ----------------------------------------------------------------------
local Event = {}
Event.__index = Event

function S.event() return setmetatable({ flag = false, waiters = {} }, Event) end

function Event:set()
  if self.flag then return end
  self.flag = true
  for _, t in ipairs(self.waiters) do
    if t.blocker then t.blocker = nil; wake(t) end
  end
  self.waiters = nil
end

local function noop() end
function Event:wait()
  if self.flag then return end
  local t = current
  self.waiters[#self.waiters + 1] = t
  t.blocker = noop
  return suspend()
end

-- Rendezvous channel (max_buffer_size 0) --------------------------------------
-- Two FIFO queues of blocked tasks (head/tail indices); entries whose task was
-- cancelled (blocker cleared) are skipped.
local Chan = {}
Chan.__index = Chan

local function queue() return { h = 1, t = 0 } end
local function push(q, e) q.t = q.t + 1; q[q.t] = e end
local function pop(q)
  while q.h <= q.t do
    local e = q[q.h]
    q[q.h] = nil
    q.h = q.h + 1
    if e.task.blocker then e.task.blocker = nil; return e end
  end
  return nil
end

function S.channel()
  return setmetatable({ senders = queue(), receivers = queue() }, Chan)
end

function Chan:send(v)
  local r = pop(self.receivers)
  if r then wake(r.task, v); return end
  local t = current
  push(self.senders, { task = t, v = v })
  t.blocker = noop
  suspend()
end

function Chan:receive()
  local s = pop(self.senders)
  if s then wake(s.task); return s.v end
  local t = current
  push(self.receivers, { task = t })
  t.blocker = noop
  return suspend()
end

-- TCP --------------------------------------------------------------------------
local Stream = {}
Stream.__index = Stream

local function wrap(h)
  local s = setmetatable({ h = h, chunks = {}, ch = 1, ct = 0 }, Stream)
  h:read_start(function(err, data)
    if err or not data then s.eof = true else
      s.ct = s.ct + 1
      s.chunks[s.ct] = data
    end
    local w = s.waiter
    if w then s.waiter = nil; w.blocker = nil; wake(w) end
  end)
  return s
end

function Stream:receive()
  while self.ch > self.ct do
    if self.eof then return nil end
    local t = current
    self.waiter = t
    t.blocker = function() self.waiter = nil end
    suspend()
  end
  local data = self.chunks[self.ch]
  self.chunks[self.ch] = nil
  self.ch = self.ch + 1
  return data
end

function Stream:send(data)
  local t = current
  self.h:write(data, function() if t.blocker then t.blocker = nil; wake(t) end end)
  t.blocker = noop
  suspend()
end

function Stream:close()
  if not self.h:is_closing() then self.h:close() end
end

function S.connect_tcp(host, port)
  local t = current
  local h = uv.new_tcp()
  h:connect(host, port, function(err)
    if t.blocker then t.blocker = nil; wake(t, err) end
  end)
  t.blocker = noop
  local err = suspend()
  assert(not err, err)
  return wrap(h)
end

-- Listen on host:0; returns the port and a stop function. Each connection runs
-- handler(stream) as a task of group g.
function S.serve_tcp(host, g, handler)
  local server = uv.new_tcp()
  assert(server:bind(host, 0))
  assert(server:listen(128, function(err)
    assert(not err, err)
    local c = uv.new_tcp()
    server:accept(c)
    g:spawn(handler, wrap(c))
  end))
  return server:getsockname().port, function() server:close() end
end

return S
