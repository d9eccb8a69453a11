-- Regression: resuming a parked task's own coroutine from elsewhere (a
-- common Lua idiom: capture coroutine.running(), resume it later) crashed
-- (NULL task in the continuation); coroutine.close on it ran the task's
-- code outside the scheduler and the task later failed with "cannot resume
-- dead coroutine". Now coroutine.resume / coroutine.close raise in the
-- caller and leave the task intact; a resume that bypasses the guard (a
-- function captured before require "loom") is ignored by the task; a close
-- that bypasses it fails the task with a clear error.

local loom = require("loom")
local core = require("loom.core")

-- The functions the guard wraps: what code captured before require "loom"
-- would hold.
local raw_resume = select(2, debug.getupvalue(coroutine.resume, 2))
local raw_close = select(2, debug.getupvalue(coroutine.close, 2))

local RESUME = "cannot resume a loom task's coroutine directly; use an event"

describe("regression: resuming a task's coroutine", function()
  it("the reproduction of the report raises in the resumer", function()
    local finished, err
    loom.run(function()
      local co
      loom.task_group(function(tg)
        tg:start_soon(function()
          co = coroutine.running()
          loom.sleep(0.05)
          finished = true
        end)
        tg:start_soon(function()
          loom.sleep(0.01)
          local ok
          ok, err = pcall(coroutine.resume, co)
          assert.is_false(ok)
        end)
      end)
    end)
    assert.is_true(finished)
    assert.truthy(tostring(err):find(RESUME, 1, true), tostring(err))
  end)

  it("parked on an event, resume and close raise and the task goes on",
    function()
      local log = {}
      loom.run(function()
        local ev = loom.event()
        local co
        loom.task_group(function(tg)
          tg:start_soon(function()
            co = coroutine.running()
            ev:wait()
            log[#log + 1] = "woken by the event"
          end)
          loom.wait_all_tasks_blocked()
          local ok, e = pcall(coroutine.resume, co, "junk")
          assert.is_false(ok)
          assert.truthy(tostring(e):find(RESUME, 1, true))
          ok, e = pcall(coroutine.close, co)
          assert.is_false(ok)
          assert.truthy(tostring(e):find("cannot close a loom task's "
            .. "coroutine", 1, true))
          local wrapped = coroutine.wrap(function() return 1 end)
          assert.equal(1, wrapped())
          ev:set()
        end)
      end)
      assert.same({ "woken by the event" }, log)
    end)

  it("from outside loom.run and from the main thread", function()
    local co
    loom.run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          co = coroutine.running()
          loom.sleep(0.01)
        end)
        loom.wait_all_tasks_blocked()
        -- A user coroutine inside a task resuming the parked one.
        local ok, e = coroutine.resume(coroutine.create(function()
          return coroutine.resume(co)
        end))
        assert.is_false(ok)
        assert.truthy(tostring(e):find(RESUME, 1, true))
      end)
    end)
    -- After the run the coroutine went back to the pool: resuming it is an
    -- ordinary dead-coroutine error, not a crash.
    local ok = coroutine.resume(co)
    assert.is_false(ok)
  end)

  it("a resume that bypasses the guard leaves the task suspended", function()
    local got
    loom.run(function()
      local co
      loom.task_group(function(tg)
        tg:start_soon(function()
          co = coroutine.running()
          got = table.pack(loom.sleep(0.02))
        end)
        loom.wait_all_tasks_blocked()
        local ok, n = raw_resume(co, "a", "b", "c")
        assert.is_true(ok)
        assert.is_nil(n)
        assert.equal("suspended", coroutine.status(co))
      end)
    end)
    assert.same({ n = 0 }, got)
  end)

  it("a close that bypasses the guard fails only that task, clearly",
    function()
      local err
      loom.run(function()
        local co
        local ok, e = pcall(loom.task_group, function(tg)
          tg:start_soon(function()
            co = coroutine.running()
            loom.sleep_forever()
          end)
          loom.wait_all_tasks_blocked()
          assert.is_true(raw_close(co))
          tg:cancel()
        end)
        assert.is_false(ok)
        err = e
      end)
      assert.is_true(loom.is(err, loom.ErrorGroup))
      assert.truthy(tostring(err.errors[1]):find("coroutine was closed or "
        .. "resumed outside the scheduler", 1, true), tostring(err))
      assert.equal(0, core.stats().live_tasks)
    end)

  it("a host closed behind the guard's back: its group's children are "
    .. "cancelled and nothing dangles", function()
      local log = {}
      local ok, err = pcall(loom.run, function()
        local host_co
        local s = loom.cancel_scope()
        loom.task_group(function(tg)
          tg:start_soon(function()
            s:run(function()
              host_co = coroutine.running()
              loom.task_group(function(inner)
                inner:start_soon(function()
                  local ok2 = pcall(loom.sleep_forever)
                  log[#log + 1] = ok2 and "woken" or "cancelled"
                  collectgarbage()
                  collectgarbage()
                  -- Walks the scope tree up through the dead host's scopes.
                  log[#log + 1] = tostring(loom.current_effective_deadline())
                end)
                loom.sleep_forever()
              end)
            end)
          end)
          loom.wait_all_tasks_blocked()
          assert.is_true(raw_close(host_co))
          s = nil
          collectgarbage()
          collectgarbage()
          loom.sleep(0.01)
        end)
      end)
      assert.is_false(ok)
      assert.truthy(tostring(err):find("coroutine was closed or resumed",
        1, true), tostring(err))
      assert.same({ "cancelled", "-inf" }, log)
      assert.equal(0, core.stats().live_tasks)
    end)
end)
