-- Bare-Lua floors of the benchmark workloads: the least any runtime that
-- runs each task on its own coroutine of the system Lua 5.4 can cost, with
-- no runtime at all, only the coroutines and the minimum bookkeeping.
--
--   lua5.4 bench/core/floors.lua CASE [N]
--
-- prints the line of every bench script (bench/README.md):
--   workload impl N seconds ops_per_sec peak_rss_kb [extra=k=v,...]
-- Needs bench/out/benchclock.so (bench/setup.sh), and for some cases
-- bench/out/floorlib.so (bench/core/floors.sh builds it) or luv.
-- bench/core/floors.sh runs every case interleaved and prints the medians.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")

local create, resume, yield = coroutine.create, coroutine.resume, coroutine.yield
local now = B.now
local CASE = arg[1] or error("usage: floors.lua CASE [N]")

local function noop() end

local cases = {}

-- W1: N trivial tasks spawned (queued), then run to their end --------------

-- (a) one coroutine created per task, queued, resumed to its end.
cases["w1-create"] = function(N)
  local q = {}
  local t0 = now()
  for i = 1, N do q[i] = create(noop) end
  for i = 1, N do
    resume(q[i])
    q[i] = nil
  end
  return now() - t0
end

-- A pooled runner: runs the function it is given, then yields `true`
-- ("finished, take me back") and waits for the next function.
local function runner(f)
  while true do
    f()
    f = yield(true)
  end
end

-- (b) the task's function queued; a pool of reused coroutines runs it.
cases["w1-pool"] = function(N)
  local q, pool, np = {}, {}, 0
  local t0 = now()
  for i = 1, N do q[i] = noop end
  for i = 1, N do
    local co
    if np > 0 then co = pool[np]; pool[np] = nil; np = np - 1 else co = create(runner) end
    local _, fin = resume(co, q[i])
    q[i] = nil
    if fin then np = np + 1; pool[np] = co end
  end
  return now() - t0
end

-- (c) (b) plus a handle object per task (a table), a FIFO queue with head
-- and tail, the handle marked done, and a group counter to join on.
cases["w1-pool-table"] = function(N)
  local q, head, tail = {}, 1, 0
  local pool, np = {}, 0
  local remaining = 0
  local function spawn(f)
    local h = { fn = f, done = false }
    tail = tail + 1
    q[tail] = h
    remaining = remaining + 1
    return h
  end
  local t0 = now()
  for _ = 1, N do spawn(noop) end
  while head <= tail do
    local h = q[head]
    q[head] = nil
    head = head + 1
    local co
    if np > 0 then co = pool[np]; pool[np] = nil; np = np - 1 else co = create(runner) end
    local _, fin = resume(co, h.fn)
    if fin then
      h.done = true
      h.fn = nil
      remaining = remaining - 1
      np = np + 1; pool[np] = co
    end
  end
  assert(remaining == 0)
  return now() - t0
end

-- (c') the same with a full userdata of 16 bytes and one user value as the
-- handle (what a C runtime hands out); the queue holds handle and function.
cases["w1-pool-ud"] = function(N)
  local newh = require("floorlib").handle
  local q, qf, head, tail = {}, {}, 1, 0
  local pool, np = {}, 0
  local remaining = 0
  local function spawn(f)
    local h = newh()
    tail = tail + 1
    q[tail], qf[tail] = h, f
    remaining = remaining + 1
    return h
  end
  local t0 = now()
  for _ = 1, N do spawn(noop) end
  while head <= tail do
    local h, f = q[head], qf[head]
    q[head], qf[head] = nil, nil
    head = head + 1
    local co
    if np > 0 then co = pool[np]; pool[np] = nil; np = np - 1 else co = create(runner) end
    local _, fin = resume(co, f)
    if fin and h then -- (a C runtime would mark h done here)
      remaining = remaining - 1
      np = np + 1; pool[np] = co
    end
  end
  assert(remaining == 0)
  return now() - t0
end

-- The same with the queue and the resumes in C (floorlib.spawn_run), as a
-- runtime written in C does them: (b) in C, and (c') in C (the handle a
-- userdata holding the function in its user value).
local function crunner(f)
  while true do
    f()
    f = yield()
  end
end
cases["w1-c-pool"] = function(N)
  local fl = require("floorlib")
  local t0 = now()
  fl.spawn_run(crunner, noop, N, false)
  return now() - t0
end
cases["w1-c-pool-ud"] = function(N)
  local fl = require("floorlib")
  local t0 = now()
  fl.spawn_run(crunner, noop, N, true)
  return now() - t0
end

-- The contract floors: loom's own bench script of a workload (bench/<dir>/
-- loom.bench.lua) run unchanged, with `loom` replaced by the least runtime
-- in C that keeps loom's contract for what the script calls (floorlib.c,
-- "W1 contract floor" and "W3 contract floor"). Returns the seconds the
-- script reports.
local function contract_run(dir, shim, n)
  local path = here .. "/../" .. dir .. "/loom.bench.lua"
  local secs
  local saved_arg = arg
  package.loaded["loom"] = shim
  package.loaded["bench"] = setmetatable({
    report = function(_, _, _, s) secs = s end,
  }, { __index = B })
  rawset(_G, "arg", { [0] = path, n }) -- the script reads its own arg
  local ok, err = pcall(dofile, path)
  rawset(_G, "arg", saved_arg)
  package.loaded["bench"] = B
  package.loaded["loom"] = nil
  if not ok then error(err, 0) end
  return secs
end

-- W1: tg:start_soon on a checked group, a handle with the function and the
-- outcome, a C struct from a free list, an anchor slot, a pooled coroutine
-- under lua_pcallk with a message handler, the group's children and count.
-- (loom.run's root task is not modelled: the body runs on the main thread.)
cases["w1-contract"] = function(N)
  local F = require("floorlib")
  return contract_run("w1_spawn", {
    run = function(f) f() end,
    task_group = F.group_run,
  }, N)
end

-- What the W1 script adds per task on top of a runtime in C: its own
-- `tg:start_soon(noop)`, a method looked up on a userdata and a C call
-- (here a C function that does nothing).
cases["w1-call"] = function(N)
  local h = require("floorlib").handle()
  local t0 = now()
  for _ = 1, N do h:set(noop) end
  return now() - t0
end

-- W2: N tasks that each yield once to the scheduler (`sleep(0)`) -------

-- In C (floorlib.spawn_yield_run): all N are suspended at their yield at
-- once, so each needs its own coroutine (created, and later collected);
-- two resumes per task through a FIFO; optionally a userdata handle each.
local function w2body() yield() end
cases["w2-c"] = function(N)
  local fl = require("floorlib")
  local t0 = now()
  local resumes = fl.spawn_yield_run(w2body, N, false)
  assert(resumes == 2 * N)
  return now() - t0
end
cases["w2-c-ud"] = function(N)
  local fl = require("floorlib")
  local t0 = now()
  fl.spawn_yield_run(w2body, N, true)
  return now() - t0
end

-- W3: switches -------------------------------------------------------------

-- The raw round trip: resume a coroutine that yields straight back. One
-- round trip (a resume and a yield) is the least one switch of a scheduler
-- costs: the task yields to the scheduler, which resumes the next one.
cases["w3-raw"] = function(M)
  local co = create(function() while true do yield() end end)
  local t0 = now()
  for _ = 1, M do resume(co) end
  return now() - t0, M
end

-- The same round trip driven from C (lua_resume in a C loop), as a
-- scheduler written in C resumes its tasks; the body allocates nothing
-- (c), a fresh table per hop (c-table) or a fresh 16-byte userdata per hop
-- (c-ud): W3 creates one fresh event per switch.
local function w3c(M, alloc)
  local fl = require("floorlib")
  local newh = fl.handle
  local body
  if alloc == "table" then
    body = function()
      local ev
      while true do ev = { set = false, waiter = false }; yield(ev) end
    end
  elseif alloc == "ud" then
    body = function() while true do yield(newh()) end end
  elseif alloc == "script" then
    -- the W3 script's own calls per hop: a fresh event, the peer's
    -- ev:set() and this side's ev:wait() (which yields), as methods
    body = function()
      local other = newh()
      while true do
        local ev = newh()
        other:set()
        ev:wait()
        other = ev
      end
    end
  else
    body = function() while true do yield() end end
  end
  local co = create(body)
  local t0 = now()
  fl.drive(co, M)
  return now() - t0, M
end
cases["w3-c"] = function(M) return w3c(M) end
cases["w3-c-table"] = function(M) return w3c(M, "table") end
cases["w3-c-ud"] = function(M) return w3c(M, "ud") end
cases["w3-c-script"] = function(M) return w3c(M, "script") end

-- W3: checked self, in-task and yieldable checks, a checkpoint, FIFO park
-- and wake, a continuation that reads the wake-up, a FIFO scheduler in C
-- polling libuv every 512 resumes. The group's tasks start when its body
-- returns, as in loom; loom.run's root task is not modelled.
cases["w3-contract"] = function(M)
  local F = require("floorlib")
  local secs = contract_run("w3_event", {
    event = F.event,
    run = function(f) f() end,
    task_group = function(body)
      local fns = {}
      body({ start_soon = function(_, fn) fns[#fns + 1] = fn end })
      F.run(table.unpack(fns))
    end,
  }, M)
  return secs, 2 * M
end

-- Two coroutines hand a token through a minimal scheduler in Lua: a ring
-- FIFO of ready coroutines, and a fresh event table per hop (as the W3
-- script). The ring is pre-filled so its array part never rehashes; the
-- event is created with both its fields (no rehash when a waiter is set).
cases["w3-sched"] = function(M)
  local ring, mask, head, tail = {}, 1023, 0, 0
  for i = 1, mask + 1 do ring[i] = false end
  local running = coroutine.running
  local function push(co)
    ring[(tail & mask) + 1] = co
    tail = tail + 1
  end
  local function wait(ev)
    if not ev.set then
      ev.waiter = running()
      yield()
    end
  end
  local function set(ev)
    ev.set = true
    local w = ev.waiter
    if w then ev.waiter = false; push(w) end
  end
  local wake_a, wake_b = nil, { set = false, waiter = false }
  local ping = create(function()
    for _ = 1, M do
      wake_a = { set = false, waiter = false }
      set(wake_b)
      wait(wake_a)
    end
  end)
  local pong = create(function()
    for _ = 1, M do
      wait(wake_b)
      wake_b = { set = false, waiter = false }
      set(wake_a)
    end
  end)
  local switches = 0
  local t0 = now()
  push(pong)
  push(ping)
  while head ~= tail do
    local i = (head & mask) + 1
    local co = ring[i]
    ring[i] = false
    head = head + 1
    assert(resume(co))
    switches = switches + 1
  end
  local secs = now() - t0
  return secs, switches
end

-- W4: N coroutines each park with a delay; a minimal scheduler wakes each --

-- A binary min-heap on integer keys (deadline in µs * 2^20 + a sequence
-- number, so that equal deadlines fire in the order they were set), with
-- the coroutine in a parallel array.
local function heap()
  local keys, vals, n = {}, {}, 0
  local H = {}
  function H.push(k, v)
    n = n + 1
    local i = n
    while i > 1 do
      local p = i // 2
      local pk = keys[p]
      if pk <= k then break end
      keys[i], vals[i] = pk, vals[p]
      i = p
    end
    keys[i], vals[i] = k, v
  end
  function H.top() return keys[1] end
  function H.pop()
    local v = vals[1]
    local k, lv = keys[n], vals[n]
    keys[n], vals[n] = nil, nil
    n = n - 1
    if n > 0 then
      local i = 1
      while true do
        local c = 2 * i
        if c > n then break end
        if c < n and keys[c + 1] < keys[c] then c = c + 1 end
        if k <= keys[c] then break end
        keys[i], vals[i] = keys[c], vals[c]
        i = c
      end
      keys[i], vals[i] = k, lv
    end
    return v
  end
  function H.size() return n end
  return H
end

local function sleeper(d) yield(d) end

-- The extra fields of every W4 case: the park-all phase, the firing, and
-- the time beyond the longest delay (seconds in, milliseconds out).
local function w4_extra(secs, park_secs, max_ms)
  return string.format("park_ms=%.1f,fire_ms=%.1f,overhead_ms=%.1f",
    park_secs * 1e3, (secs - park_secs) * 1e3, (secs - max_ms / 1000) * 1e3)
end

-- The end of a case driven by one luv timer: close it, report.
local function w4_done(timer, t0, t_park, max_ms)
  local secs = now() - t0
  timer:close()
  require("luv").run("nowait")
  return secs, nil, w4_extra(secs, t_park - t0, max_ms)
end

-- fresh: each park reads the clock (the deadline counts from the park);
-- cached: parks in one scheduler pass share the clock read at its start,
-- as libuv's uv_now() does for uv_timer_start (the deadline counts from
-- the start of the pass that spawned the task).
local function w4(N, fresh)
  local uv = require("luv")
  local delays, max_ms = B.delays_ms(N)
  local h = heap()
  local timer = uv.new_timer()
  local SH = 1048576
  local t0 = now()
  local loop_us = 0
  for i = 1, N do
    local co = create(sleeper)
    local _, d = resume(co, delays[i])
    if fresh then loop_us = (now() - t0) * 1e6 end
    h.push(math.floor(loop_us + d * 1000) * SH + i, co)
  end
  local t_park = now()
  local fire_cb = function() end
  while h.size() > 0 do
    local cur = math.floor((now() - t0) * 1e6) * SH + SH - 1
    while h.size() > 0 and h.top() <= cur do resume(h.pop()) end
    if h.size() > 0 then
      local wait_us = h.top() // SH - (now() - t0) * 1e6
      if wait_us > 0 then
        timer:start(math.ceil(wait_us / 1000), 0, fire_cb)
        uv.run("once")
      end
    end
  end
  return w4_done(timer, t0, t_park, max_ms)
end
cases["w4-heap-fresh"] = function(N) return w4(N, true) end
cases["w4-heap-cached"] = function(N) return w4(N, false) end
cases["w4-heap-gen"] = function(N)
  collectgarbage("generational")
  return w4(N, true)
end

-- A timer wheel instead of the heap: one bucket (an array) per whole ms of
-- deadline, fired in order from a cursor: O(1) per timer, and the parked
-- coroutines of a bucket are resumed in the order they parked. 1 ms is
-- libuv's own resolution.
local function w4wheel(N, fresh)
  local uv = require("luv")
  local delays, max_ms = B.delays_ms(N)
  local buckets, left = {}, N
  local timer = uv.new_timer()
  local t0 = now()
  local loop_ms = 0
  for i = 1, N do
    local co = create(sleeper)
    local _, d = resume(co, delays[i])
    if fresh then loop_ms = (now() - t0) * 1e3 end
    local k = math.floor(loop_ms + d)
    local b = buckets[k]
    if not b then b = {}; buckets[k] = b end
    b[#b + 1] = co
  end
  local t_park = now()
  local fire_cb = function() end
  local cursor = 0
  while left > 0 do
    local now_ms = (now() - t0) * 1e3
    while cursor <= now_ms do
      local b = buckets[cursor]
      if b then
        buckets[cursor] = nil
        for j = 1, #b do resume(b[j]) end
        left = left - #b
      end
      cursor = cursor + 1
    end
    if left > 0 then
      timer:start(math.max(1, math.ceil(cursor - (now() - t0) * 1e3)), 0, fire_cb)
      uv.run("once")
    end
  end
  return w4_done(timer, t0, t_park, max_ms)
end
cases["w4-wheel-cached"] = function(N) return w4wheel(N, false) end
cases["w4-wheel-fresh"] = function(N) return w4wheel(N, true) end

-- The same with one luv timer per parked coroutine instead of the heap.
cases["w4-luv"] = function(N)
  local uv = require("luv")
  local delays, max_ms = B.delays_ms(N)
  local t0 = now()
  for i = 1, N do
    local co = create(sleeper)
    local _, d = resume(co, delays[i])
    local t = uv.new_timer()
    t:start(d, 0, function()
      t:close()
      resume(co)
    end)
  end
  local t_park = now()
  uv.run()
  local secs = now() - t0
  return secs, nil, w4_extra(secs, t_park - t0, max_ms)
end

-- The scheduler in C (floorlib.timers): coroutines created and resumed
-- from C, one libuv timer each, as C on libuv does plus the coroutines.
local function w4c(N, fresh)
  local delays, max_ms = B.delays_ms(N)
  local park, secs = require("floorlib").timers(sleeper, delays, fresh)
  return secs, nil, w4_extra(secs, park, max_ms)
end
cases["w4-c-cached"] = function(N) return w4c(N, false) end
cases["w4-c-fresh"] = function(N) return w4c(N, true) end
-- The same with the collector stopped: what the collection costs in it.
cases["w4-c-nogc"] = function(N)
  collectgarbage("stop")
  return w4c(N, true)
end

-- Where the firing time goes: N parked coroutines resumed to their end
-- with no timers at all, in the order they were created (seq) or in the
-- order of their W4 deadlines (sorted, as the timers fire them).
local function w4order(N, sorted)
  local delays = B.delays_ms(N)
  local q = {}
  for i = 1, N do
    local co = create(sleeper)
    resume(co, delays[i])
    q[i] = co
  end
  if sorted then
    local idx = {}
    for i = 1, N do idx[i] = i end
    table.sort(idx, function(a, b)
      if delays[a] ~= delays[b] then return delays[a] < delays[b] end
      return a < b
    end)
    local s = {}
    for i = 1, N do s[i] = q[idx[i]] end
    q = s
  end
  local t0 = now()
  for i = 1, N do
    resume(q[i])
    q[i] = false
  end
  return now() - t0
end
cases["w4-resume-seq"] = function(N) return w4order(N, false) end
cases["w4-resume-sorted"] = function(N) return w4order(N, true) end

-- W5: bytes per parked coroutine ------------------------------------------

local bodies = {
  bare = function() yield() end,
  handle = function() yield() end,
  pcall = function() pcall(yield) end,
  callk = function()
    local callk = require("floorlib").callk
    return function() callk(yield) end
  end,
}

local function w5(N, kind)
  local body = bodies[kind]
  if kind == "callk" then body = body() end
  local q, hs = {}, {}
  for i = 1, N do q[i] = false end -- the anchor array exists before
  local newh = kind == "handle" and require("floorlib").handle
  if newh then for i = 1, N do hs[i] = false end end
  local base_kb = B.settled_rss_kb()
  local base_count = collectgarbage("count")
  local t0 = now()
  for i = 1, N do
    local co = create(body)
    resume(co)
    q[i] = co
    if newh then hs[i] = newh() end
  end
  local secs = now() - t0
  local rss_kb = B.settled_rss_kb()
  local count = collectgarbage("count")
  for i = 1, N do assert(coroutine.status(q[i]) == "suspended") end
  if newh then assert(hs[N]) end
  return secs, nil, string.format("lua_bytes=%.0f,rss_bytes=%.0f",
    (count - base_count) * 1024 / N, (rss_kb - base_kb) * 1024 / N)
end
cases["w5-bare"] = function(N) return w5(N, "bare") end
cases["w5-pcall"] = function(N) return w5(N, "pcall") end
cases["w5-callk"] = function(N) return w5(N, "callk") end
-- bare, plus the smallest handle (a 16-byte userdata, one user value) in a
-- second anchored array: a coroutine plus the least per-task state.
cases["w5-handle"] = function(N) return w5(N, "handle") end

-- W7: N parked coroutines each resumed once to raise the cancellation -----

local CANCEL = setmetatable({}, { __tostring = function() return "Cancelled" end })
local function cancellable()
  if yield() == CANCEL then error(CANCEL) end
end

local function w7(N, collect, close)
  local q = {}
  for i = 1, N do
    local co = create(cancellable)
    resume(co)
    q[i] = co
  end
  collectgarbage("collect")
  local t0 = now()
  for i = 1, N do
    local co = q[i]
    q[i] = nil
    if close then
      coroutine.close(co)
    else
      local ok, err = resume(co, CANCEL)
      if ok or err ~= CANCEL then error("not cancelled") end
    end
  end
  if collect then collectgarbage("collect") end
  return now() - t0
end
cases["w7-raise"] = function(N) return w7(N, false) end
cases["w7-raise-gc"] = function(N) return w7(N, true) end
-- coroutine.close: no unwinding (no finally/__close in the task runs on the
-- way); shows what the raise itself costs.
cases["w7-close"] = function(N) return w7(N, false, true) end

local defaults = { w1 = 100000, w2 = 100000, w3 = 1000000, w4 = 100000, w5 = 100000, w7 = 100000 }
local fn = cases[CASE] or error("floors.lua: unknown case " .. CASE)
local N = B.arg(2, defaults[CASE:sub(1, 2)])
local secs, ops, extra = fn(N)
ops = ops or N
if CASE:sub(1, 2) == "w3" then
  extra = string.format("ns_per_switch=%.1f", secs * 1e9 / ops)
elseif not extra then
  extra = string.format("ns_per_task=%.1f", secs * 1e9 / N)
end
local workload = CASE:match("^(w%d)"):upper()
B.report(workload, "floor-" .. CASE:sub(4), ops, secs, extra)
