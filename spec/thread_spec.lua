-- loom.to_thread / loom.to_thread_with: moving functions and copying values
-- to worker threads, results and errors coming back, the worker pool and
-- the default limiter. Cancellation and run_sync: thread_cancel_spec.lua.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")
local W = require("thread_work")

local run = H.run

local raises = H.raises

local function message_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return H.message(err)
end

describe("loom.to_thread", function()
  after_each(function()
    run(W.settle)
    local s = core.thread_stats()
    assert.equal(0, s.calls_in_flight)
    assert.equal(0, s.calls_waited_on)
    assert.equal(0, s.queued_jobs)
    assert.equal(0, s.queued_completions)
  end)

  it("runs a function in a worker and returns all its results", function()
    run(function()
      local n, a, b, c = loom.to_thread(function(...)
        return select("#", ...), ...
      end, nil, 2, nil)
      assert.equal(3, n)
      assert.is_nil(a)
      assert.equal(2, b)
      assert.is_nil(c)
      assert.equal(0, select("#", loom.to_thread(function() end)))
      assert.same({ 1, nil, 3, n = 3 },
        table.pack(loom.to_thread(function() return 1, nil, 3 end)))
    end)
  end)

  it("runs it on another OS thread, in another Lua state", function()
    run(function()
      _G.thread_spec_marker = "parent"
      local seen, path, cpath = loom.to_thread(function()
        return tostring(_G.thread_spec_marker), package.path, package.cpath
      end)
      _G.thread_spec_marker = nil
      assert.equal("nil", seen)
      assert.equal(package.path, path)
      assert.equal(package.cpath, cpath)
      -- the worker has the standard libraries
      assert.equal("2.0 x 3", loom.to_thread(function()
        return string.format("%.1f %s %d", math.sqrt(4), utf8.char(120),
          #table.pack(1, 2, 3))
      end))
    end)
  end)

  it("copies numbers keeping integer and float apart", function()
    run(function()
      local r = table.pack(loom.to_thread(function(...)
        local out = {}
        for i = 1, select("#", ...) do
          local v = select(i, ...)
          out[i] = math.type(v)
        end
        return out, ...
      end, 1, 1.0, math.maxinteger, math.mininteger, -0.0, 1 / 0, 0 / 0,
        2 ^ 53))
      assert.same({ "integer", "float", "integer", "integer", "float",
        "float", "float", "float" }, r[1])
      assert.equal(math.maxinteger, r[4])
      assert.equal(math.mininteger, r[5])
      assert.equal("float", math.type(r[3]))
      assert.equal(-math.huge, 1 / r[6])
      assert.equal(math.huge, r[7])
      assert.is_true(r[8] ~= r[8])
    end)
  end)

  it("copies strings with any bytes, and booleans", function()
    run(function()
      local s = "a\0b\0\255\1" .. string.rep("x", 100000)
      local back, len, t, f = loom.to_thread(function(str, yes, no)
        return str, #str, yes, no
      end, s, true, false)
      assert.equal(s, back)
      assert.equal(#s, len)
      assert.is_true(t)
      assert.is_false(f)
    end)
  end)

  it("copies nested tables, keeping shared references and cycles across "
    .. "all arguments", function()
    run(function()
      local shared = { "shared" }
      local a = { x = shared, list = { 1, 2, { deep = true } } }
      a.self = a
      local b = { y = shared, [true] = "t", [2.5] = "f", [shared] = "key" }
      local same, cyc, deep, keyed, ra, rb = loom.to_thread(function(p, q)
        return p.x == q.y, p.self == p, p.list[3].deep, q[q.y],
          p, q
      end, a, b)
      assert.is_true(same)
      assert.is_true(cyc)
      assert.is_true(deep)
      assert.equal("key", keyed)
      -- and back again
      assert.equal(ra, ra.self)
      assert.equal(ra.x, rb.y)
      assert.equal("shared", ra.x[1])
      assert.equal("t", rb[true])
      assert.equal("f", rb[2.5])
      assert.equal("key", rb[rb.y])
      assert.are_not.equal(a, ra)
    end)
  end)

  it("keeps one table passed twice one table, and many values", function()
    run(function()
      local t = { 1 }
      local same, a, b = loom.to_thread(function(p, q) return p == q, p, q end,
        t, t)
      assert.is_true(same)
      assert.equal(a, b)
      local many = {}
      for i = 1, 250 do many[i] = i end
      local r = table.pack(loom.to_thread(function(...)
        return select("#", ...), ...
      end, table.unpack(many)))
      assert.equal(250, r[1])
      assert.equal(251, r.n)
      assert.equal(250, r[251])
    end)
  end)

  it("does not copy metatables", function()
    run(function()
      local obj = setmetatable({ v = 1 },
        { __index = function() return 42 end })
      local has_mt, missing, back = loom.to_thread(function(o)
        return getmetatable(o) ~= nil, o.missing, o
      end, obj)
      assert.is_false(has_mt)
      assert.is_nil(missing)
      assert.is_nil(getmetatable(back))
      assert.equal(1, back.v)
    end)
  end)

  it("runs a \"module.func\" string, splitting at the last dot", function()
    run(function()
      assert.equal("ababab", loom.to_thread("string.rep", "ab", 3))
      assert.equal(42, loom.to_thread("thread_work.double", 21))
      assert.is_false(loom.to_thread("loom.errors.is_cancelled", {}))
    end)
  end)

  it("moves functions with no upvalue or only _ENV", function()
    run(function()
      assert.equal(5, loom.to_thread(function(x) return x end, 5))
      assert.equal("number", loom.to_thread(function(x) return type(x) end, 5))
    end)
  end)

  it("reuses idle workers and starts more on demand", function()
    run(function()
      for _ = 1, 20 do loom.to_thread(function() end) end
      assert.equal(1, core.thread_stats().workers)
      -- three calls that wait for each other need three workers
      _G.thread_spec_arrived = 0
      loom.task_group(function(tg)
        for _ = 1, 3 do
          tg:start_soon(loom.to_thread, function()
            local l = require("loom")
            l.thread.run_sync(function()
              _G.thread_spec_arrived = _G.thread_spec_arrived + 1
            end)
            repeat until l.thread.run_sync(function()
              return _G.thread_spec_arrived
            end) == 3
          end)
        end
      end)
      _G.thread_spec_arrived = nil
      assert.equal(3, core.thread_stats().workers)
    end)
  end)

  it("closes idle workers after the idle timeout", function()
    local old = core.thread_configure({ idle_timeout = 0.05 })
    run(function()
      loom.task_group(function(tg)
        for _ = 1, 2 do
          tg:start_soon(loom.to_thread, "thread_work.spin", 0.02)
        end
      end)
      assert.is_true(core.thread_stats().workers >= 1)
      local stop = loom.now() + 3
      while core.thread_stats().workers > 0 and loom.now() < stop do
        loom.sleep(0.01)
      end
      assert.equal(0, core.thread_stats().workers)
      -- and new ones come when needed
      assert.equal(4, loom.to_thread("thread_work.double", 2))
      assert.equal(1, core.thread_stats().workers)
    end)
    core.thread_configure({ idle_timeout = old.idle_timeout })
  end)

  it("gives a worker the parent's package paths when it is created",
    function()
    local old = core.thread_configure({ idle_timeout = 0 })
    local p0 = package.path
    local ok, err = pcall(run, function()
      repeat loom.sleep(0.005) until core.thread_stats().workers == 0
      core.thread_configure({ idle_timeout = 10 })
      local function path() return package.path end
      assert.equal(p0, loom.to_thread(path))          -- worker 1 made now
      package.path = p0 .. ";/nonexistent/?.lua"
      assert.equal(p0, loom.to_thread(path))          -- worker 1 reused
      local got = {}
      loom.task_group(function(tg)
        for i = 1, 2 do                               -- worker 2 made now
          tg:start_soon(function()
            -- each call waits for the other: they need two workers
            got[i] = loom.to_thread(function()
              local l = require("loom")
              l.thread.run_sync(function()
                _G.thread_spec_arrived = (_G.thread_spec_arrived or 0) + 1
              end)
              repeat until l.thread.run_sync(function()
                return _G.thread_spec_arrived
              end) == 2
              return package.path
            end)
          end)
        end
      end)
      table.sort(got)
      assert.same({ p0, p0 .. ";/nonexistent/?.lua" }, got)
    end)
    package.path = p0
    _G.thread_spec_arrived = nil
    core.thread_configure({ idle_timeout = old.idle_timeout })
    assert(ok, err)
  end)

  it("shows a waiting task in the task tree", function()
    run(function()
      local tree
      loom.task_group(function(tg)
        -- (long enough for a slow host, valgrind, to look while it waits)
        tg:start_soon(loom.to_thread, "thread_work.spin", 0.3)
        loom.wait_all_tasks_blocked()
        tree = tostring(loom.task_tree())
      end)
      H.contains(tree, "to_thread")
    end)
  end)

  it("is a checkpoint: a task waiting on a worker lets others run", function()
    run(function()
      local log, add = H.log()
      _G.thread_spec_ticks = 0
      loom.task_group(function(tg)
        tg:start_soon(function()
          add("thread start")
          -- the worker returns once the other task ticked three times
          loom.to_thread(function()
            local l = require("loom")
            repeat until l.thread.run_sync(function()
              return _G.thread_spec_ticks
            end) == 3
          end)
          add("thread end")
        end)
        tg:start_soon(function()
          for i = 1, 3 do
            add("tick " .. i)
            _G.thread_spec_ticks = i
            loom.sleep(0.005)
          end
        end)
      end)
      _G.thread_spec_ticks = nil
      assert.same({ "thread start", "tick 1", "tick 2", "tick 3",
        "thread end" }, log)
    end)
  end)

  it("is never taken for a deadlock while a worker runs", function()
    assert.equal("spun", run(loom.to_thread, "thread_work.spin", 0.05))
  end)
end)

describe("loom.current_default_thread_limiter", function()
  after_each(function() run(W.settle) end)

  it("is a capacity limiter of 40 tokens, one per runtime", function()
    local lim = loom.current_default_thread_limiter()
    assert.equal(lim, loom.current_default_thread_limiter())
    assert.equal(40, lim.total_tokens)
    assert.matches("^loom.CapacityLimiter", tostring(lim))
  end)

  it("bounds how many calls run at once; total_tokens is assignable",
    function()
    local lim = loom.current_default_thread_limiter()
    lim.total_tokens = 1
    local ok, err = pcall(run, function()
      local peak, running = 0, 0
      loom.task_group(function(tg)
        for _ = 1, 3 do
          tg:start_soon(function()
            loom.to_thread("thread_work.spin", 0.01)
          end)
        end
        tg:start_soon(function()
          for _ = 1, 10 do
            running = lim.borrowed_tokens
            if running > peak then peak = running end
            loom.sleep(0.002)
          end
        end)
      end)
      assert.equal(1, peak)
    end)
    lim.total_tokens = 40
    assert(ok, err)
  end)

  it("holds a token while the call runs, on behalf of the call", function()
    run(function()
      local lim = loom.current_default_thread_limiter()
      loom.task_group(function(tg)
        tg:start_soon(loom.to_thread, "thread_work.spin", 0.3)
        loom.wait_all_tasks_blocked() -- (the call runs: its task waits)
        assert.equal(1, lim.borrowed_tokens)
        local b = lim:statistics().borrowers[1]
        assert.matches("^loom.ThreadCall", tostring(b))
      end)
      assert.equal(0, lim.borrowed_tokens)
    end)
  end)

  it("can be replaced per call with to_thread_with{limiter=}", function()
    run(function()
      local mine = loom.capacity_limiter(2)
      loom.task_group(function(tg)
        tg:start_soon(loom.to_thread_with, { limiter = mine },
          "thread_work.spin", 0.3)
        loom.wait_all_tasks_blocked()
        assert.equal(1, mine.borrowed_tokens)
        assert.equal(0, loom.current_default_thread_limiter().borrowed_tokens)
      end)
      assert.equal(0, mine.borrowed_tokens)
      assert.equal(6, loom.to_thread_with({}, "thread_work.double", 3))
    end)
  end)
end)

describe("worker errors", function()
  after_each(function() run(W.settle) end)

  it("come back as loom.ThreadError with the cause and the worker's "
    .. "traceback", function()
    run(function()
      local line = debug.getinfo(1, "l").currentline + 2
      local err = raises(loom.ThreadError, loom.to_thread, function(x)
        error("boom " .. x)
      end, 7)
      assert.is_true(loom.is(err, loom.Error))
      local where = "thread_spec.lua:" .. line .. ": boom 7"
      H.contains(err.cause, where)
      assert.equal(err.cause, err.message)
      assert.equal("ThreadError: " .. err.cause, tostring(err))
      H.contains(err.traceback, "stack traceback:")
      H.contains(err.traceback, "thread_spec.lua:" .. line)
    end)
  end)

  it("copy the error value, or use its text when it cannot be copied",
    function()
    run(function()
      local err = raises(loom.ThreadError, loom.to_thread, function()
        error({ code = 5, list = { 1, 2 } })
      end)
      assert.same({ code = 5, list = { 1, 2 } }, err.cause)
      H.contains(err.message, "table: ")
      err = raises(loom.ThreadError, loom.to_thread, function()
        error(setmetatable({ code = 6 }, {
          __tostring = function(e) return "custom error " .. e.code end }))
      end)
      assert.equal("custom error 6", err.message)
      assert.same({ code = 6 }, err.cause)
      assert.is_nil(getmetatable(err.cause))
      err = raises(loom.ThreadError, loom.to_thread, function()
        error(print)
      end)
      assert.equal("string", type(err.cause))
      H.contains(err.cause, "function: ")
      assert.equal(err.cause, err.message)
      err = raises(loom.ThreadError, loom.to_thread, function()
        error(nil)
      end)
      assert.equal("nil", err.message)
    end)
  end)

  it("a worker's loom error keeps its text", function()
    run(function()
      local err = raises(loom.ThreadError, loom.to_thread, function()
        local l = require("loom")
        error(l.TimeoutError())
      end)
      assert.equal("TimeoutError: deadline exceeded", err.message)
      assert.equal("deadline exceeded", err.cause.message)
    end)
  end)

  it("a module that does not exist in the worker", function()
    run(function()
      local err = raises(loom.ThreadError, loom.to_thread,
        "no_such_module_x.f")
      H.contains(err.message, "module 'no_such_module_x' not found")
      H.contains(err.traceback, "in function 'require'")
      err = raises(loom.ThreadError, loom.to_thread, "string.no_such_fn")
      assert.equal("module 'string' has no function 'no_such_fn'",
        H.message(err.message))
    end)
  end)

  it("results that cannot be copied back", function()
    run(function()
      local err = raises(loom.ThreadError, loom.to_thread, function()
        return 1, { f = print }
      end)
      assert.equal("cannot copy a function (at .f) back from the worker "
        .. "thread (result #2)", err.message)
      err = raises(loom.ThreadError, loom.to_thread, function()
        return coroutine.create(print)
      end)
      assert.equal("cannot copy a thread back from the worker thread "
        .. "(result #1)", err.message)
    end)
  end)

  it("out of memory in a worker is that call's error", function()
    local old = core.thread_configure({ memory_limit = 8 * 1024 * 1024 })
    local ok, e = pcall(run, function()
      local err = raises(loom.ThreadError, loom.to_thread, function()
        local t = {}
        for i = 1, 1e8 do t[i] = { i } end
        return #t
      end)
      assert.equal("not enough memory", err.message)
      err = raises(loom.ThreadError, loom.to_thread, "string.rep", "x",
        1e8)
      assert.equal("not enough memory", err.message)
      -- the worker goes on
      assert.equal(4, loom.to_thread("thread_work.double", 2))
    end)
    core.thread_configure({ memory_limit = old.memory_limit })
    assert(ok, e)
  end)
end)

describe("bad input", function()
  after_each(function() run(W.settle) end)

  it("functions with upvalues other than _ENV", function()
    run(function()
      local up = 1
      assert.equal("bad argument #1 to 'to_thread' (function has upvalue "
        .. "'up' (only _ENV can be moved to a worker thread))",
        message_of(loom.to_thread, function() return up end))
      assert.equal("bad argument #2 to 'to_thread_with' (function has "
        .. "upvalue 'up' (only _ENV can be moved to a worker thread))",
        message_of(loom.to_thread_with, {}, function() return up end))
      -- the check is by name: a stripped function has no names
      local stripped = load(string.dump(function() return print end, true))
      H.contains(message_of(loom.to_thread, stripped),
        "function has upvalue '(no name)'")
    end)
  end)

  it("C functions, non-functions and bad module names", function()
    run(function()
      assert.equal("bad argument #1 to 'to_thread' (a C function cannot be "
        .. "moved to a worker thread (name it as a \"module.func\" string))",
        message_of(loom.to_thread, print))
      assert.equal("bad argument #1 to 'to_thread' (function or "
        .. "\"module.func\" string expected, got table)",
        message_of(loom.to_thread, {}))
      assert.equal("bad argument #1 to 'to_thread' (function or "
        .. "\"module.func\" string expected, got no value)",
        message_of(loom.to_thread))
      for _, name in ipairs({ "nodot", ".f", "mod.", "" }) do
        assert.equal("bad argument #1 to 'to_thread' (\"module.func\" "
          .. "string expected, got \"" .. name .. "\")",
          message_of(loom.to_thread, name))
      end
    end)
  end)

  it("coroutines, userdata and functions as arguments, named by position",
    function()
    run(function()
      local f = function() end
      assert.equal("bad argument #3 to 'to_thread' (cannot copy a thread "
        .. "to a worker thread)",
        message_of(loom.to_thread, f, 1, coroutine.create(f)))
      assert.equal("bad argument #2 to 'to_thread' (cannot copy a userdata "
        .. "to a worker thread)", message_of(loom.to_thread, f, io.stdout))
      assert.equal("bad argument #2 to 'to_thread' (cannot copy a function "
        .. "(at .a[2].cb) to a worker thread)",
        message_of(loom.to_thread, f, { a = { 1, { cb = f } } }))
      assert.equal("bad argument #4 to 'to_thread_with' (cannot copy a "
        .. "function used as a key (at .k) to a worker thread)",
        message_of(loom.to_thread_with, {}, f, 1, { k = { [f] = 1 } }))
      local deep = {}
      local t = deep
      for _ = 1, 150 do t.next = {}; t = t.next end
      H.contains(message_of(loom.to_thread, f, deep),
        "cannot copy a table nested more than 100 deep")
    end)
  end)

  it("bad options of to_thread_with", function()
    run(function()
      local f = function() end
      assert.equal("bad argument #1 to 'to_thread_with' (table expected, "
        .. "got no value)", message_of(loom.to_thread_with))
      assert.equal("bad argument #1 to 'to_thread_with' (table expected, "
        .. "got function)", message_of(loom.to_thread_with, f))
      assert.equal("bad argument #1 to 'to_thread_with' (unknown option "
        .. "'abandon')", message_of(loom.to_thread_with, { abandon = true }, f))
      assert.equal("bad argument #1 to 'to_thread_with' (abandon_on_cancel "
        .. "must be a boolean, got string)",
        message_of(loom.to_thread_with, { abandon_on_cancel = "yes" }, f))
      assert.equal("bad argument #1 to 'to_thread_with' (limiter must be a "
        .. "loom.CapacityLimiter, got table)",
        message_of(loom.to_thread_with, { limiter = {} }, f))
      assert.equal("bad argument #1 to 'to_thread_with' (limiter must be a "
        .. "loom.CapacityLimiter, got userdata)",
        message_of(loom.to_thread_with, { limiter = loom.semaphore(1) }, f))
    end)
  end)

  it("blames the caller's line", function()
    run(function()
      local ok, err = pcall(function()
        loom.to_thread(print)
      end)
      assert.is_false(ok)
      H.contains(err, "thread_spec.lua:" .. (debug.getinfo(1, "l")
        .currentline - 3) .. ": bad argument #1")
    end)
  end)

  it("outside a task", function()
    assert.equal("loom.to_thread: must be called from inside a loom task "
      .. "(start one with loom.run)",
      message_of(loom.to_thread, function() end))
    assert.equal("loom.to_thread_with: must be called from inside a loom "
      .. "task (start one with loom.run)",
      message_of(loom.to_thread_with, {}, function() end))
  end)

  it("loom.thread functions outside a worker", function()
    assert.equal("loom.thread.check_cancelled: must be called in a worker "
      .. "thread (a function run by loom.to_thread)",
      message_of(loom.thread.check_cancelled))
    assert.equal("loom.thread.run_sync: must be called in a worker thread "
      .. "(a function run by loom.to_thread)",
      message_of(loom.thread.run_sync, function() end))
    run(function()
      assert.equal("loom.thread.check_cancelled: must be called in a worker "
        .. "thread (a function run by loom.to_thread)",
        message_of(loom.thread.check_cancelled))
    end)
  end)
end)
