-- The misuse fuzzer: seeded random calls of every public function and
-- method of loom with wrong types, wrong self and stale objects, from every
-- context (outside a task, in a task, in a user coroutine, in a table.sort
-- comparator, in __gc, in __close while a cancellation unwinds). Nothing may
-- crash, and every error must be a loom error object or a message in the
-- lauxlib style, naming the function and blaming the caller: never a raw
-- "attempt to ..." error, nor a position inside loom's own Lua files.
--
-- LOOM_FUZZ_SEED and LOOM_FUZZ_COUNT choose the run; the suite runs a short
-- one, `make fuzz` a long one.

local loom = require("loom")
local core = require("loom.core")
local diagnostics = require("loom.diagnostics")

local seed = tonumber(os.getenv("LOOM_FUZZ_SEED")) or 20261206
local slow = (os.getenv("LOOM_TEST_PREFIX") or ""):find("valgrind", 1, true)
local count = tonumber(os.getenv("LOOM_FUZZ_COUNT")) or (slow and 3000)
  or 20000

local own_dir = debug.getinfo(loom.run ~= nil and loom.task_group or print,
  "S").source:match("^@(.*[/\\])[^/\\]*$")

-- Is this error acceptable? Loom error objects are; strings must not be a
-- raw Lua error nor point inside loom's Lua files.
local function bad_error(e)
  if type(e) == "table" then
    if loom.is(e, loom.Error) then return nil end
    return nil -- user values raised through (a callback's own error)
  end
  if type(e) ~= "string" then return nil end
  if e:find("attempt to ", 1, true) then return "raw Lua error" end
  if own_dir and e:find(own_dir, 1, true) then
    return "blames loom's own file"
  end
  if e:find("C stack overflow", 1, true) then return "stack overflow" end
  return nil
end

-- Values passed as arguments.
local function plain_values()
  return {
    nil, true, false, 0, -1, 1.5, 1e308, -math.huge, math.huge, 0 / 0,
    2 ^ 53, "", "1", "127.0.0.1", "localhost", "\0", {}, { 1, 2 },
    setmetatable({}, { __index = function() error("index trap") end }),
    function() end, function() error("callback failed") end,
    function() return true end, coroutine.create(function() end),
    io.stdout, loom.Cancelled, loom.TimeoutError,
    setmetatable({}, loom.Cancelled),
  }
end

local function pick(t, n)
  return t[math.random(n or #t)]
end

-- The methods of v: those listed, plus every method its metatable answers
-- (so that a method added to a class is fuzzed without being listed here).
local function methods_of(v, listed)
  local set, out = {}, {}
  for _, m in ipairs(listed) do set[m] = true end
  local mt = getmetatable(v)
  if type(mt) == "table" then
    for m in pairs((diagnostics.members(mt))) do set[m] = true end
  end
  for m in pairs(set) do out[#out + 1] = m end
  table.sort(out)
  return out
end

local sock_n = 0
local function sock_path()
  sock_n = sock_n + 1
  return ("%s/loom-fuzz-%d-%d.sock"):format(os.getenv("TMPDIR") or "/tmp",
    math.floor(loom.now() * 1000) % 1000000, sock_n)
end

-- Objects of every class, some fresh, some stale. Built inside a task.
-- Returns them and the objects to close afterwards.
local function make_objects(tg)
  local objs = {}
  local function add(kind, v, methods) objs[#objs + 1] = {
    kind = kind, v = v, methods = methods_of(v, methods) } end
  local ev_methods = { "set", "is_set", "wait", "statistics" }
  local lock_methods = { "acquire", "acquire_nowait", "release", "locked",
    "statistics" }
  local sem_methods = { "acquire", "acquire_nowait", "release",
    "statistics" }
  local cond_methods = { "acquire", "acquire_nowait", "release", "locked",
    "wait", "wait_for", "notify", "notify_all", "statistics" }
  local lim_methods = { "acquire", "acquire_nowait", "acquire_on_behalf_of",
    "acquire_on_behalf_of_nowait", "release", "release_on_behalf_of",
    "statistics" }
  local send_methods = { "send", "send_nowait", "clone", "close",
    "statistics" }
  local recv_methods = { "receive", "receive_nowait", "clone", "close",
    "statistics" }
  local stream_methods = { "receive", "send", "send_eof", "close",
    "local_address", "remote_address" }
  local buffered_methods = { "receive", "receive_exactly", "receive_until",
    "send", "send_eof", "close", "local_address", "remote_address" }
  local listener_methods = { "accept", "close", "local_address", "serve" }
  local handle_methods = { "status", "done", "cancel", "wait", "result",
    "return_value", "error", "parent" }
  local group_methods = { "start_soon", "create_task", "start", "cancel" }
  local scope_methods = { "run", "cancel" }
  local eg_methods = { "split", "subgroup", "leaves" }

  add("event", loom.event(), ev_methods)
  local set_ev = loom.event()
  set_ev:set()
  add("event", set_ev, ev_methods)
  add("lock", loom.lock(), lock_methods)
  add("semaphore", loom.semaphore(1), sem_methods)
  add("condition", loom.condition(), cond_methods)
  add("limiter", loom.capacity_limiter(2), lim_methods)
  local s, r = loom.channel(1)
  add("send", s, send_methods)
  add("recv", r, recv_methods)
  local s2, r2 = loom.channel(0)
  s2:close()
  r2:close()
  add("send", s2, send_methods)
  add("recv", r2, recv_methods)
  add("handle", tg:start_soon(function() end), handle_methods)
  add("handle", tg:start_soon(loom.sleep, 0.001), handle_methods)
  add("group", tg, group_methods)
  local stale_group
  loom.task_group(function(g) stale_group = g end)
  add("group", stale_group, group_methods)
  add("scope", loom.cancel_scope(), scope_methods)
  local used = loom.cancel_scope()
  used:run(function() end)
  add("scope", used, scope_methods)
  add("errorgroup", loom.ErrorGroup("m", { "x", loom.TimeoutError() }),
    eg_methods)
  local listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = listener:local_address()
  add("listener", listener, listener_methods)
  local a = loom.connect_tcp("127.0.0.1", port)
  local b = listener:accept()
  add("stream", a, stream_methods)
  add("stream", b, stream_methods)
  add("buffered", loom.buffered(b), buffered_methods)
  local closed = loom.connect_tcp("127.0.0.1", port)
  local closed_peer = listener:accept()
  closed:close()
  closed_peer:close()
  add("stream", closed, stream_methods)
  local closed_listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  closed_listener:close()
  add("listener", closed_listener, listener_methods)
  -- What the host-driven runtime and the process area added.
  add("future", loom.future(), {})
  local set_future = loom.future()
  set_future:set(1)
  add("future", set_future, {})
  local ul = loom.create_unix_listener{ path = sock_path() }
  add("unix_listener", ul, listener_methods)
  local ua = loom.connect_unix(ul:local_address())
  local ub = ul:accept()
  add("unix_stream", ua, stream_methods)
  add("unix_stream", ub, stream_methods)
  local rx = loom.open_signal_receiver("SIGUSR2")
  add("signal_receiver", rx, {})
  local proc = loom.open_process({ "cat" }, { stdin = "pipe",
    stdout = "pipe" })
  add("process", proc, {})
  add("pipe_stream", proc.stdin, stream_methods)
  add("pipe_stream", proc.stdout, stream_methods)
  return objs, { listener, a, b, ul, ua, ub, rx, proc.stdin, proc.stdout,
    setmetatable({}, { __index = { close = function()
      pcall(proc.kill, proc)
      loom.cancel_scope{ shield = true }:run(proc.wait, proc)
    end } }) }
end

-- Host groups exist outside loom.run only: fuzzed there, with values that
-- start no failing task (whose error would be printed by the hook).
local function make_host_objects()
  local objs = {}
  local hg = loom.host_group("fuzz")
  objs[1] = { kind = "host_group", v = hg,
    methods = methods_of(hg, { "start_soon", "cancel", "close", "alive" }),
    quiet = true }
  local closed = loom.host_group("fuzz closed")
  closed:close()
  objs[2] = { kind = "host_group", v = closed, methods = objs[1].methods,
    quiet = true }
  return objs, hg
end

-- Module functions (never with a callback that could block forever: the
-- value pool has no loom blocking function in it).
local module_fns = {}
for name, v in pairs(loom) do
  if type(v) == "function" then module_fns[#module_fns + 1] = name end
end
table.sort(module_fns)

local failures = {}
local calls = 0

-- Host groups the random calls made: closed at the end.
local made_groups = {}
local function track_host_group(...)
  local hg = loom.host_group(...)
  made_groups[#made_groups + 1] = hg
  return hg
end

local function record(what, ok, e)
  calls = calls + 1
  if not ok then
    local why = bad_error(e)
    if why and #failures < 20 then
      failures[#failures + 1] = ("%s: %s: %s"):format(what, why,
        tostring(e))
    end
  end
end

-- One random call: a module function, or a method with a right or wrong
-- self. Returns a description and a thunk.
local function random_call(objs, values, quiet_values)
  local nargs = math.random(0, 3)
  local args = {}
  local o = pick(objs)
  local vals = o.quiet and quiet_values or values
  for i = 1, nargs do
    -- (Objects can be callable, such as a signal receiver: not for quiet
    -- ones, whose started task would fail.)
    if math.random() < 0.2 and not o.quiet then args[i] = pick(objs).v
    else args[i] = pick(vals, o.quiet and #vals or 27) end
  end
  if math.random() < 0.4 then
    local name = pick(module_fns)
    if name == "run" and math.random() < 0.9 then name = "now" end
    local f = loom[name]
    if name == "host_group" then f = track_host_group end
    return "loom." .. name, function()
      return f(table.unpack(args, 1, nargs))
    end
  end
  local m = pick(o.methods)
  local ok, f = pcall(function() return o.v[m] end)
  if not ok or type(f) ~= "function" then
    return o.kind .. ":" .. m .. " (lookup)", function() error(f, 0) end
  end
  local self = o.v
  local r = math.random()
  if r < 0.25 then self = pick(vals, o.quiet and #vals or 27)
  elseif r < 0.4 then self = pick(objs).v end
  return o.kind .. ":" .. m, function()
    return f(self, table.unpack(args, 1, nargs))
  end
end

-- Run thunk in a context; the call's own outcome is recorded where it ran.
local contexts = {}

function contexts.task(what, thunk)
  -- A deadline bounds every call that blocks: mostly already passed.
  local d = math.random() < 0.1 and 0.001 or -1
  local s = loom.cancel_scope{ deadline = loom.now() + d }
  s:run(function() record(what, pcall(thunk)) end)
end

function contexts.coroutine(what, thunk)
  local co = coroutine.create(function() record(what, pcall(thunk)) end)
  local ok, e = coroutine.resume(co)
  record(what .. " (coroutine)", ok, e)
end

function contexts.sort(what, thunk)
  local done = false
  local ok, e = pcall(table.sort, { 2, 1 }, function(x, y)
    if not done then
      done = true
      record(what, pcall(thunk))
    end
    return x < y
  end)
  record(what .. " (sort)", ok, e)
end

function contexts.gc(what, thunk)
  setmetatable({}, { __gc = function() record(what, pcall(thunk)) end })
  collectgarbage()
end

function contexts.close(what, thunk)
  local s = loom.cancel_scope()
  s:run(function()
    local _ <close> = setmetatable({}, { __close = function()
      record(what, pcall(thunk))
    end })
    s:cancel()
    loom.checkpoint()
  end)
end

local context_names = { "task", "task", "task", "coroutine", "sort", "gc",
  "close" }

describe("misuse fuzzer", function()
  it(("survives %d random calls (seed %d) with clear errors"):format(count,
    seed), function()
    math.randomseed(seed)
    local values = plain_values()
    -- Outside any task.
    local outside = math.max(1, count // 10)
    local stale, stale_keep
    loom.run(function()
      while calls < count - outside do
        -- One group per batch: a random call may start a failing child,
        -- which cancels the rest of its batch only.
        local ok, e = pcall(loom.task_group, function(tg)
          local objs, keep = make_objects(tg)
          for _ = 1, 200 do
            local what, thunk = random_call(objs, values)
            contexts[pick(context_names)](what, thunk)
          end
          for _, v in ipairs(keep) do pcall(v.close, v) end
          tg:cancel()
        end)
        if not ok then record("task_group", false, e) end
      end
      -- Objects that outlive their run: used from outside any task below.
      pcall(loom.task_group, function(tg)
        stale, stale_keep = make_objects(tg)
        -- The process is reaped now (a stale, finished one is fuzzed).
        table.remove(stale_keep).close()
        tg:cancel()
      end)
    end)
    -- Outside any task (the main thread, no loom.run in progress), and in
    -- finalisers run there.
    local host_objs, hg = make_host_objects()
    for _, o in ipairs(host_objs) do stale[#stale + 1] = o end
    local quiet = {}
    for _, v in ipairs(values) do
      if type(v) ~= "function" and type(v) ~= "table" then
        quiet[#quiet + 1] = v
      end
    end
    quiet[#quiet + 1] = function() end
    for i = 1, outside do
      local what, thunk = random_call(stale, values, quiet)
      if i % 2 == 0 then record(what, pcall(thunk))
      else contexts.gc(what, thunk) end
    end
    for _, v in ipairs(stale_keep) do pcall(v.close, v) end
    assert.is_true(hg:close(5))
    for _, g in ipairs(made_groups) do assert.is_true(g:close(5)) end
    -- The stale objects (a reaped process's pipes among them) are dropped
    -- here; they and the streams the random calls made and dropped
    -- (loom.stdin() ...) are closed by their finalisers, which may run in a
    -- later cycle (one made inside a finaliser is garbage only then); their
    -- close callbacks need the loop to run.
    stale, stale_keep, host_objs = nil, nil, nil  -- luacheck: ignore
    for _ = 1, 3 do
      collectgarbage()
      collectgarbage()
      loom.run(function() loom.sleep(0.005) end)
    end
    assert.same({}, failures)
    assert.equal(0, core.stats().live_tasks)
  end)
end)
