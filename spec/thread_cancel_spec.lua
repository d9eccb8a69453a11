-- Worker threads and cancellation (the caller waits shielded by default,
-- or leaves with abandon_on_cancel), loom.thread.check_cancelled and
-- loom.thread.run_sync inside a worker, a worker's own loom.run.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")
local W = require("thread_work")

local run = H.run

local raises = H.raises

local function settled()
  local s = run(W.settle)
  assert.equal(0, s.calls_in_flight)
  assert.equal(0, s.calls_waited_on)
  assert.equal(0, s.queued_completions)
  assert.equal(0, loom.current_default_thread_limiter().borrowed_tokens)
end

describe("cancelling a task that waits on a worker", function()
  after_each(settled)

  it("by default waits for the worker, returns its result, and raises "
    .. "Cancelled at the next checkpoint", function()
    run(function()
      local log, add = H.log()
      local t0 = loom.now()
      local scope = W.cancel_when_running(function()
        local r = loom.to_thread("thread_work.spin", 0.15)
        add("returned " .. r)
        add(("after %.1f"):format(loom.now() - t0 >= 0.15 and 1 or 0))
        loom.checkpoint()
        add("not reached")
      end)
      assert.is_true(scope.cancelled_caught)
      assert.same({ "returned spun", "after 1.0" }, log)
    end)
  end)

  it("lets the worker see it with loom.thread.check_cancelled()", function()
    run(function()
      local log, add = H.log()
      -- without check_cancelled() raising, the call would return
      -- "not cancelled" after 30 s
      local scope = W.cancel_when_running(function()
        add(loom.to_thread("thread_work.spin_until_cancelled", 30))
      end)
      assert.is_true(scope.cancelled_caught)
      assert.same({}, log)
      -- not cancelled: check_cancelled does nothing
      assert.equal("not cancelled",
        loom.to_thread("thread_work.spin_until_cancelled", 0.01))
    end)
  end)

  it("the worker's Cancelled becomes the caller's own Cancelled", function()
    run(function()
      local err
      local scope = loom.cancel_scope()
      scope:run(function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            local ok, e = pcall(loom.to_thread, function()
              local l = require("loom")
              while true do l.thread.check_cancelled() end
            end)
            assert.is_false(ok)
            err = e
          end)
          loom.sleep(0.01)
          scope:cancel("stop")
        end)
      end)
      assert.is_true(loom.is_cancelled(err))
      H.contains(err.message, "reason: stop")
    end)
  end)

  it("the worker can catch its Cancelled and return normally", function()
    run(function()
      local r
      local scope = W.cancel_when_running(function()
        r = table.pack(loom.to_thread(function()
          local l = require("loom")
          local ok, e = pcall(function()
            while true do l.thread.check_cancelled() end
          end)
          return ok, l.is_cancelled(e), tostring(e)
        end))
      end)
      -- no checkpoint after the call: the scope saw no Cancelled
      assert.is_false(scope.cancelled_caught)
      assert.is_false(r[1])
      assert.is_true(r[2])
      assert.equal("Cancelled: the task that called loom.to_thread was "
        .. "cancelled", r[3])
      local ok, cancelled, text = loom.to_thread(function()
        local l = require("loom")
        local ok, e = pcall(l.thread.check_cancelled)
        return ok, e
      end)
      assert.is_true(ok)
      assert.is_nil(cancelled)
      assert.is_nil(text)
    end)
  end)

  it("with abandon_on_cancel leaves at once and drops the result",
    function()
    run(function()
      local lim = loom.current_default_thread_limiter()
      local got
      local scope = W.cancel_when_running(function()
        got = loom.to_thread_with({ abandon_on_cancel = true },
          "thread_work.spin", 0.3)
      end)
      assert.is_true(scope.cancelled_caught)
      assert.is_nil(got)
      -- the caller left while the worker still runs, holding its token
      -- until it ends
      local s = core.thread_stats()
      assert.equal(1, s.calls_in_flight)
      assert.equal(0, s.calls_waited_on)
      assert.equal(1, lim.borrowed_tokens)
      s = W.settle()
      assert.equal(0, s.calls_in_flight)
      assert.equal(0, lim.borrowed_tokens)
    end)
  end)

  it("with abandon_on_cancel the worker also sees check_cancelled()",
    function()
    run(function()
      -- without check_cancelled() raising, the worker would run 60 s,
      -- longer than W.settle waits
      W.cancel_when_running(function()
        loom.to_thread_with({ abandon_on_cancel = true },
          "thread_work.spin_until_cancelled", 60)
      end)
      assert.equal(0, W.settle().calls_in_flight)
    end)
  end)

  it("an abandoned call may outlive loom.run; the next run completes it",
    function()
    local lim = loom.current_default_thread_limiter()
    run(function()
      W.cancel_when_running(function()
        loom.to_thread_with({ abandon_on_cancel = true }, "thread_work.spin",
          0.1)
      end)
    end)
    assert.equal(1, core.thread_stats().calls_in_flight)
    assert.equal(1, lim.borrowed_tokens)
    -- not a task waiting on it: an idle loom.run is still a deadlock
    local ok, err = pcall(run, function()
      loom.event():wait()
    end)
    assert.is_false(ok)
    H.contains(tostring(err), "deadlock")
    local s = run(W.settle)
    assert.equal(0, s.calls_in_flight)
    assert.equal(0, lim.borrowed_tokens)
  end)

  it("already cancelled: raises before running anything", function()
    run(function()
      local ran = false
      local scope = loom.cancel_scope()
      scope:run(function()
        scope:cancel()
        local ok, err = pcall(loom.to_thread, "thread_work.spin", 0)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(err))
        ran = true
      end)
      assert.is_true(ran)
      assert.equal(0, core.thread_stats().calls_in_flight)
    end)
  end)

  it("loom.run does not end before a default call ends", function()
    local t0 = core.now()
    local ok, err = pcall(run, function()
      loom.task_group(function(tg)
        tg:start_soon(loom.to_thread, "thread_work.spin", 0.1)
        loom.sleep(0.01)
        error("host fails")
      end)
    end)
    assert.is_false(ok)
    H.contains(tostring(err), "host fails")
    assert.is_true(core.now() - t0 >= 0.1)
    assert.equal(0, core.thread_stats().calls_in_flight)
  end)
end)

describe("loom.thread.run_sync", function()
  after_each(settled)

  it("runs a function as a task of the calling runtime and returns its "
    .. "results to the worker", function()
    run(function()
      local a, b = loom.to_thread(function(x)
        local l = require("loom")
        local y, who = l.thread.run_sync(function(v)
          local pl = require("loom")
          pl.sleep(0.01)                     -- it may block
          return v * 2, pl.current_task().name
        end, x)
        return y + 1, who
      end, 20)
      assert.equal(41, a)
      assert.equal("loom.thread.run_sync", b)
    end)
  end)

  it("runs where the caller can see it (parent globals, many calls)",
    function()
    run(function()
      _G.run_sync_counter = 0
      local n = loom.to_thread(function()
        local l = require("loom")
        for _ = 1, 5 do
          l.thread.run_sync(function()
            _G.run_sync_counter = _G.run_sync_counter + 1
          end)
        end
        return l.thread.run_sync("thread_work.double", 21)
      end)
      assert.equal(42, n)
      assert.equal(5, _G.run_sync_counter)
      _G.run_sync_counter = nil
    end)
  end)

  it("raises the task's error in the worker", function()
    run(function()
      local caught, text = loom.to_thread(function()
        local l = require("loom")
        local ok, e = pcall(l.thread.run_sync, function()
          error({ code = 3 })
        end)
        local ok2, e2 = pcall(l.thread.run_sync, function()
          error("plain", 0)
        end)
        return not ok and e.code, not ok2 and e2
      end)
      assert.equal(3, caught)
      assert.equal("plain", text)
      local err = raises(loom.ThreadError, loom.to_thread, function()
        local l = require("loom")
        l.thread.run_sync(function() error("inner", 0) end)
      end)
      assert.equal("inner", err.message)
    end)
  end)

  it("checks its function and arguments like to_thread", function()
    run(function()
      local err = raises(loom.ThreadError, loom.to_thread, function()
        local l = require("loom")
        local up = l
        return l.thread.run_sync(function() return up end)
      end)
      assert.equal("bad argument #1 to 'run_sync' (function has upvalue "
        .. "'up' (only _ENV can be moved to a worker thread))",
        H.message(err.message))
      err = raises(loom.ThreadError, loom.to_thread, function()
        local l = require("loom")
        return l.thread.run_sync(function() end, 1, print)
      end)
      assert.equal("bad argument #3 to 'run_sync' (cannot copy a function "
        .. "to the runtime's thread)", H.message(err.message))
      err = raises(loom.ThreadError, loom.to_thread, function()
        local l = require("loom")
        return l.thread.run_sync(function() return print end)
      end)
      assert.equal("cannot copy a function back to the worker thread "
        .. "(result #1)", err.message)
    end)
  end)

  it("its task lives under the caller's cancel scope", function()
    run(function()
      local log, add = H.log()
      local scope = loom.move_on_after(0.03, function()
        loom.to_thread(function()
          local l = require("loom")
          l.thread.run_sync(function()
            require("loom").sleep(10)
          end)
          return "not reached"
        end)
        add("not reached either")
      end)
      assert.is_true(scope.cancelled_caught)
      assert.same({}, log)
    end)
  end)

  it("is refused with Cancelled once an abandoning caller left", function()
    run(function()
      _G.run_sync_late = nil
      W.cancel_when_running(function()
        loom.to_thread_with({ abandon_on_cancel = true }, function()
          local l = require("loom")
          require("thread_work").spin(0.05)
          local ok, e = pcall(l.thread.run_sync, function()
            _G.run_sync_late = true
          end)
          assert(not ok and l.is_cancelled(e))
        end)
      end)
      W.settle()
      assert.is_nil(_G.run_sync_late)
    end)
  end)

  it("shows in the task tree below the caller", function()
    run(function()
      local tree
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.to_thread(function()
            local l = require("loom")
            l.thread.run_sync(function() require("loom").sleep(0.05) end)
          end)
        end, nil)
        loom.sleep(0.03)
        tree = tostring(loom.task_tree())
      end)
      H.contains(tree, "\"loom.thread.run_sync\"")
    end)
  end)
end)

describe("a worker's own loom.run", function()
  after_each(settled)

  it("works during its call, with its own tasks and threads", function()
    run(function()
      local r, nested = loom.to_thread(function()
        local l = require("loom")
        return l.run(function()
          local out = {}
          l.task_group(function(tg)
            for i = 1, 3 do
              tg:start_soon(function()
                l.sleep(0.001 * (4 - i))
                out[#out + 1] = i
              end)
            end
          end)
          return table.concat(out, ","), l.to_thread("thread_work.double", 4)
        end)
      end)
      assert.equal("3,2,1", r)
      assert.equal(8, nested)
    end)
  end)
end)
