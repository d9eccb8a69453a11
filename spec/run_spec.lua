-- loom.run, the clock, sleeping, checkpoints, wait_all_tasks_blocked,
-- current_task and deadlock detection (docs/api.md "Running and time").

local loom = require("loom")
local H = require("helpers")

local run, log = H.run, H.log

describe("loom.run", function()
  it("returns every result of the root function, nils included", function()
    local r = table.pack(run(function(a, b) return a + b, nil, "x", nil end,
                             1, 2))
    assert.same({ n = 4, 3, nil, "x", nil }, r)
  end)

  it("returns nothing when the root returns nothing", function()
    assert.equal(0, select("#", run(function() end)))
  end)

  it("passes its extra arguments to the root function", function()
    local got = table.pack(run(function(...) return table.pack(...) end,
                               1, nil, "three"))
    assert.same({ n = 3, 1, nil, "three" }, got[1])
  end)

  it("accepts a C function", function()
    assert.equal(2, run(select, "#", "a", "b"))
  end)

  it("accepts a callable table", function()
    local callable = setmetatable({}, { __call = function(_, x)
      return x * 2
    end })
    assert.equal(42, run(callable, 21))
  end)

  it("re-raises a string error with the root task's call chain", function()
    local where
    local function inner() where = H.here(); error("boom") end
    local err = H.capture_error(run, function() inner() end)
    -- The message first, then where it was raised inside the task (the
    -- caller of loom.run would only see [C]: in function 'loom.run').
    assert.equal(where .. ": boom\nstack traceback:", err:match("^[^\n]*\n[^\n]*"))
    H.contains(err, "\n\t" .. where .. ": in ")
    H.contains(err, "in upvalue 'inner'")
    assert.is_nil(err:find("lua/loom/", 1, true))
    err = H.capture_error(run, function() error("plain", 0) end)
    assert.equal("plain\nstack traceback:", err:match("^[^\n]*\n[^\n]*"))
  end)

  it("re-raises a table error as the same object with .traceback", function()
    local obj = { reason = "mine" }
    local where
    local err = H.capture_error(run, function()
      local function inner()
        where = H.here(); error(obj)
      end
      inner()
    end)
    assert.is_true(rawequal(obj, err))
    assert.equal("string", type(err.traceback))
    H.contains(err.traceback, where)
  end)

  it("keeps a .traceback the error object already had", function()
    local obj = { traceback = "mine" }
    local err = H.capture_error(run, function() error(obj) end)
    assert.equal("mine", err.traceback)
  end)

  it("re-raises other error values unchanged", function()
    assert.equal(42, H.capture_error(run, function() error(42) end))
    assert.is_true(H.capture_error(run, function() error(true) end))
  end)

  it("re-raises a loom error with the traceback of where it was raised",
    function()
      local where
      local err = H.capture_error(run, function()
        where = H.here(); error(loom.TimeoutError("slow"))
      end)
      assert.is_true(loom.is(err, loom.TimeoutError))
      assert.equal("slow", err.message)
      H.contains(err.traceback, where)
    end)

  it("waits for every task started inside it", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() loom.sleep(0.01); add("child") end)
      end)
      add("root")
    end)
    assert.same({ "child", "root" }, events)
  end)

  it("can be called again after a run ended, with or without error",
    function()
      assert.equal(1, run(function() loom.checkpoint(); return 1 end))
      H.capture_error(run, function() loom.checkpoint(); error("x") end)
      assert.equal(2, run(function() loom.checkpoint(); return 2 end))
    end)

  it("runs the root task on a coroutine of its own", function()
    local outer = coroutine.running()
    run(function()
      local co, main = coroutine.running()
      assert.is_false(main)
      assert.are_not.equal(outer, co)
    end)
  end)
end)

describe("a Lua state whose memory is not zeroed", function()
  -- glibc's MALLOC_PERTURB_ fills fresh allocations with garbage, as a
  -- reused heap does in a long-running host. loom must not read the
  -- extra space of threads it did not set itself.
  local script = [[
local loom = require("loom")
print(loom.run(function() return "ran" end))
print(select(2, pcall(loom.sleep, 1)))
print(coroutine.wrap(function()
  return loom.run(function() loom.sleep(0); return "in coroutine" end)
end)())
]]

  it("loom.run works and blocking calls raise the documented message", function()
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(script)
    f:close()
    local cmd = ("MALLOC_PERTURB_=165 LUA_PATH=%q LUA_CPATH=%q lua5.4 %q 2>&1")
      :format(package.path, package.cpath, file)
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    p:close()
    os.remove(file)
    assert.equal("ran\nloom.sleep: must be called from inside a loom task "
      .. "(start one with loom.run)\nin coroutine\n", out)
  end)
end)

describe("loom.now", function()
  it("is a float on a monotonic clock", function()
    run(function()
      local a = loom.now()
      local b = loom.now()
      assert.equal("float", math.type(a))
      assert.is_true(b >= a)
    end)
  end)

  it("can be read outside loom.run", function()
    assert.equal("float", math.type(loom.now()))
  end)
end)

describe("loom.sleep", function()
  it("sleep(0) yields exactly once", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        for _, name in ipairs({ "a", "b" }) do
          tg:start_soon(function()
            for i = 1, 3 do
              add(name .. i)
              loom.sleep(0)
            end
          end)
        end
      end)
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, events)
  end)

  it("resumes no earlier than the delay", function()
    run(function()
      local t0 = loom.now()
      loom.sleep(0.02)
      assert.is_true(loom.now() - t0 >= 0.02)
    end)
  end)

  it("wakes sleepers in deadline order", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        for _, d in ipairs({ 0.03, 0.01, 0.02 }) do
          tg:start_soon(function() loom.sleep(d); add(d) end)
        end
      end)
    end)
    assert.same({ 0.01, 0.02, 0.03 }, events)
  end)

  it("returns nothing", function()
    run(function()
      assert.equal(0, select("#", loom.sleep(0)))
      assert.equal(0, select("#", loom.sleep(0.001)))
    end)
  end)

  it("raises Cancelled before sleeping in a cancelled scope", function()
    run(function()
      local t0 = loom.now()
      local s = loom.cancel_scope()
      local reached = false
      s:run(function()
        s:cancel()
        loom.sleep(1)
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancelled_caught)
      assert.is_true(loom.now() - t0 < 0.5)
    end)
  end)

  it("sleep(0) raises Cancelled in a cancelled scope", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        local ok, e = pcall(loom.sleep, 0)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(e))
      end)
    end)
  end)

  it("sleep(math.huge) sleeps until cancelled", function()
    run(function()
      local s = loom.move_on_after(0.01, function() loom.sleep(math.huge) end)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("a very long sleep or deadline does not spin the CPU", function()
    -- Run a blocked loom in a child process for 0.3 s and read the CPU
    -- ticks (1/100 s) it used from /proc.
    local function ticks(body)
      local file = os.tmpname()
      local f = assert(io.open(file, "w"))
      f:write('local loom = require("loom")\nloom.run(function() ', body,
        ' end)\n')
      f:close()
      local cmd = ("LUA_PATH=%q LUA_CPATH=%q lua5.4 %q & pid=$!; sleep 0.3; "
        .. "awk '{print $14 + $15}' /proc/$pid/stat; kill $pid")
        :format(package.path, package.cpath, file)
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      os.remove(file)
      return tonumber(out)
    end
    -- Regression: a deadline more than ~1.8e16 s away overflowed the libuv
    -- timeout and the scheduler spun.
    assert.is_true(ticks("loom.sleep(1e9)") < 10)
    assert.is_true(ticks("loom.sleep(1e20)") < 10)
    assert.is_true(ticks("loom.cancel_scope{ deadline = 1e300 }"
      .. ":run(loom.sleep_forever)") < 10)
  end)

  it("is aborted at once when its scope is cancelled by another task",
    function()
      local events, add = log()
      run(function()
        loom.task_group(function(tg)
          local s = loom.cancel_scope()
          tg:start_soon(function()
            s:run(function()
              add("sleeping")
              loom.sleep(10)
              add("not reached")
            end)
            add("child caught=" .. tostring(s.cancelled_caught))
          end)
          loom.wait_all_tasks_blocked()
          s:cancel()
          add("cancelled")
        end)
      end)
      assert.same({ "sleeping", "cancelled", "child caught=true" }, events)
    end)
end)

describe("loom.sleep_until", function()
  it("resumes no earlier than the deadline", function()
    run(function()
      local deadline = loom.now() + 0.02
      loom.sleep_until(deadline)
      assert.is_true(loom.now() >= deadline)
    end)
  end)

  it("wakes equal deadlines in the order they were set", function()
    local events, add = log()
    run(function()
      local deadline = loom.now() + 0.01
      loom.task_group(function(tg)
        for i = 1, 4 do
          tg:start_soon(function() loom.sleep_until(deadline); add(i) end)
        end
      end)
    end)
    assert.same({ 1, 2, 3, 4 }, events)
  end)

  it("with a deadline in the past yields once", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() add("other") end)
        loom.sleep_until(loom.now() - 1)
        add("after")
      end)
    end)
    assert.same({ "other", "after" }, events)
  end)

  it("accepts a negative deadline", function()
    run(function() loom.sleep_until(-5) end)
  end)

  it("is a checkpoint even when the deadline has passed", function()
    run(function()
      local s = loom.cancel_scope()
      local reached = false
      s:run(function()
        s:cancel()
        loom.sleep_until(loom.now() - 1)
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("sleep_until(math.huge) sleeps until cancelled", function()
    run(function()
      local s = loom.move_on_after(0.01, function()
        loom.sleep_until(math.huge)
      end)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("loom.sleep_forever", function()
  it("sleeps until cancelled", function()
    run(function()
      local reached = false
      local s = loom.move_on_after(0.01, function()
        loom.sleep_forever()
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancel_called)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("raises Cancelled at once in a cancelled scope (Trio main3)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        local ok, e = pcall(loom.sleep_forever)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(e))
      end)
    end)
  end)
end)

describe("loom.checkpoint", function()
  it("yields to other ready tasks", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() add("child") end)
        add("before")
        loom.checkpoint()
        add("after")
      end)
    end)
    assert.same({ "before", "child", "after" }, events)
  end)

  it("raises Cancelled only once the scope is cancelled (Trio main2)",
    function()
      run(function()
        local s = loom.cancel_scope()
        s:run(function()
          loom.checkpoint()
          s:cancel()
          local ok, e = pcall(loom.checkpoint)
          assert.is_false(ok)
          assert.is_true(loom.is_cancelled(e))
        end)
      end)
    end)

  it("notices a deadline that passed while the task ran (Trio "
    .. "test_yield_briefly_checks_for_timeout)", function()
    run(function()
      local s = loom.cancel_scope{ deadline = loom.now() + 0.01 }
      s:run(function()
        loom.checkpoint()
        H.busy(0.02)
        local ok, e = pcall(loom.checkpoint)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(e))
      end)
    end)
  end)
end)

describe("loom.checkpoint_if_cancelled", function()
  it("returns without yielding when not cancelled", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() add("child") end)
        loom.checkpoint_if_cancelled()
        add("host")
      end)
    end)
    assert.same({ "host", "child" }, events)
  end)

  it("raises Cancelled once the scope is cancelled (Trio main1)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        loom.checkpoint_if_cancelled()
        s:cancel()
        local ok, e = pcall(loom.checkpoint_if_cancelled)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(e))
      end)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("works where Lua cannot yield", function()
    run(function()
      local t = { 3, 1, 2 }
      table.sort(t, function(a, b)
        loom.checkpoint_if_cancelled()
        return a < b
      end)
      assert.same({ 1, 2, 3 }, t)
    end)
  end)
end)

describe("loom.cancel_shielded_checkpoint", function()
  it("yields once", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() add("child") end)
        add("before")
        loom.cancel_shielded_checkpoint()
        add("after")
      end)
    end)
    assert.same({ "before", "child", "after" }, events)
  end)

  it("never raises Cancelled; the next checkpoint does (Trio main4)",
    function()
      run(function()
        local s = loom.cancel_scope()
        local events, add = log()
        s:run(function()
          s:cancel()
          loom.cancel_shielded_checkpoint()
          add(1)
          loom.cancel_shielded_checkpoint()
          add(2)
          local ok, e = pcall(loom.checkpoint)
          add(ok)
          assert.is_true(loom.is_cancelled(e))
        end)
        assert.same({ 1, 2, false }, events)
      end)
    end)
end)

describe("loom.wait_all_tasks_blocked", function()
  it("returns once every other task is blocked", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          for i = 1, 5 do add("a" .. i); loom.checkpoint() end
          loom.sleep_forever()
        end)
        tg:start_soon(function()
          for i = 1, 3 do add("b" .. i); loom.sleep(0) end
          loom.sleep_forever()
        end)
        loom.wait_all_tasks_blocked()
        add("host")
        tg:cancel()
      end)
    end)
    assert.same({ "a1", "b1", "a2", "b2", "a3", "b3", "a4", "a5", "host" },
      events)
  end)

  it("counts a task in a timed sleep as blocked", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() loom.sleep(0.02); add("woke") end)
        loom.wait_all_tasks_blocked()
        add("host")
      end)
    end)
    assert.same({ "host", "woke" }, events)
  end)

  it("returns when the caller is the only task", function()
    run(function() loom.wait_all_tasks_blocked() end)
  end)

  it("lets several tasks wait at once", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        for i = 1, 3 do
          tg:start_soon(function()
            loom.wait_all_tasks_blocked()
            add(i)
          end)
        end
        tg:start_soon(function() loom.sleep_forever() end)
        loom.wait_all_tasks_blocked()
        -- the others may come before or after the host
        while #events < 3 do loom.wait_all_tasks_blocked() end
        tg:cancel()
      end)
    end)
    table.sort(events)
    assert.same({ 1, 2, 3 }, events)
  end)

  it("raises Cancelled in a cancelled scope", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        loom.wait_all_tasks_blocked()
        error("not reached")
      end)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("loom.current_task", function()
  it("returns the running task's handle", function()
    run(function()
      local root = loom.current_task()
      assert.equal(root, loom.current_task())
      assert.equal("integer", math.type(root.id))
      local mine
      loom.task_group(function(tg)
        local h = tg:start_soon(function() mine = loom.current_task() end)
        loom.wait_all_tasks_blocked()
        assert.equal(h, mine)
      end)
      assert.are_not.equal(root, mine)
      assert.are_not.equal(root.id, mine.id)
    end)
  end)

  it("works in a plain coroutine running inside a task", function()
    run(function()
      local me = loom.current_task()
      local co = coroutine.wrap(function()
        coroutine.yield(loom.current_task())
      end)
      assert.equal(me, co())
    end)
  end)

  it("gives every task a different id", function()
    run(function()
      local ids = {}
      loom.task_group(function(tg)
        for _ = 1, 5 do
          tg:start_soon(function() ids[loom.current_task().id] = true end)
        end
      end)
      ids[loom.current_task().id] = true
      local n = 0
      for _ in pairs(ids) do n = n + 1 end
      assert.equal(6, n)
    end)
  end)
end)

describe("deadlock detection", function()
  it("raises when the root blocks forever with nothing to wake it",
    function()
      local err = H.capture_error(run, function() loom.sleep_forever() end)
      assert.equal("string", type(err))
      H.contains(err, "loom.run: deadlock")
    end)

  it("cancels every task so that cleanup code runs", function()
    local events, add = log()
    local err = H.capture_error(run, function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          local ok, e = pcall(loom.sleep_forever)
          add(loom.is_cancelled(e) and "child cancelled" or tostring(ok))
          error(e, 0)
        end)
        loom.sleep_forever()
      end)
    end)
    assert.same({ "child cancelled" }, events)
    H.contains(err, "deadlock")
  end)

  it("reports an error that cleanup raised instead of the deadlock",
    function()
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            pcall(loom.sleep_forever)
            error("cleanup failed", 0)
          end)
          loom.sleep_forever()
        end)
      end)
      assert.is_true(loom.is(err, loom.ErrorGroup))
      assert.same({ "cleanup failed" }, err.errors)
    end)

  it("raises when tasks stay blocked after being cancelled", function()
    local line
    local err = H.capture_error(run, function()
      local s = loom.cancel_scope{ shield = true }
      line = H.here(); s:run(loom.sleep_forever)
    end)
    -- Which tasks are stuck, and where.
    assert.matches("^loom%.run: deadlock: tasks stay blocked after being "
      .. "cancelled\nthe stuck tasks:\nTask %d+ \"function [^\"]+\" "
      .. "%(pending%) sleep_forever at " .. line:gsub("%p", "%%%0") .. "$",
      err)
    assert.equal("next run", run(function()
      loom.sleep(0.001)
      return "next run"
    end))
  end)

  it("does not fire while a timed sleep is pending", function()
    assert.equal("ok", run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() loom.sleep(0.02) end)
      end)
      return "ok"
    end))
  end)
end)
