-- Cancel scopes, deadlines, shields and timeouts (docs/api.md "Cancel scopes
-- and timeouts"). Ports of Trio test_run.py /
-- test_timeouts.py and AnyIO test_taskgroups.py scope tests.

local loom = require("loom")
local H = require("helpers")

local run, log = H.run, H.log
local inf = math.huge

-- pcall fn and return whether it raised Cancelled.
local function raises_cancelled(fn, ...)
  local ok, e = pcall(fn, ...)
  return not ok and loom.is_cancelled(e)
end

describe("loom.cancel_scope", function()
  it("builds an unentered scope with defaults", function()
    local s = loom.cancel_scope()
    assert.equal(inf, s.deadline)
    assert.is_false(s.shield)
    assert.is_false(s.cancel_called)
    assert.is_false(s.cancelled_caught)
    H.contains(tostring(s), "loom.CancelScope")
  end)

  it("takes deadline and shield options", function()
    local s = loom.cancel_scope{ deadline = 12.5, shield = true }
    assert.equal(12.5, s.deadline)
    assert.is_true(s.shield)
    assert.equal(inf, loom.cancel_scope{}.deadline)
  end)

  it("scope:run runs fn(...) (only the given arguments, like pcall) in the "
    .. "calling task and returns its results", function()
    run(function()
      local s = loom.cancel_scope()
      local me = loom.current_task()
      local r = table.pack(s:run(function(a, b, ...)
        assert.equal(0, select("#", ...))
        assert.equal(me, loom.current_task())
        return b, a, nil
      end, 1, 2))
      assert.same({ n = 3, 2, 1, nil }, r)
    end)
  end)

  it("scope:run returns nothing when the scope caught a cancellation",
    function()
      run(function()
        local s = loom.cancel_scope()
        local r = table.pack(s:run(function()
          s:cancel()
          loom.checkpoint()
          return "not reached"
        end))
        assert.equal(0, r.n)
        assert.is_true(s.cancelled_caught)
      end)
    end)

  it("scope:run lets other errors through", function()
    run(function()
      local s = loom.cancel_scope()
      local obj = {}
      local err = H.capture_error(s.run, s, function() error(obj) end)
      assert.is_true(rawequal(obj, err))
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("cancel() is idempotent and sets cancel_called (Trio "
    .. "test_cancel_edge_cases)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        s:cancel()
        loom.checkpoint()
      end)
      assert.is_true(s.cancel_called)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("cancel() is not a checkpoint", function()
    local events, add = log()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        add("still running")
        loom.checkpoint()
        add("not reached")
      end)
    end)
    assert.same({ "still running" }, events)
  end)

  it("cancel() before entering cancels the first checkpoint inside "
    .. "(AnyIO test_cancel_before_entering_scope)", function()
    run(function()
      local s = loom.cancel_scope()
      s:cancel()
      assert.is_true(s.cancel_called)
      local reached = false
      s:run(function()
        loom.sleep(1)
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("cancel() after exit only sets cancel_called", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function() loom.checkpoint() end)
      s:cancel()
      loom.checkpoint()
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("can be cancelled from another task (AnyIO "
    .. "test_cancel_scope_in_another_task)", function()
    run(function()
      local local_scope
      local result = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          local_scope = loom.cancel_scope()
          local_scope:run(function()
            loom.sleep(2)
            result = true
          end)
        end)
        while local_scope == nil do loom.sleep(0) end
        local_scope:cancel()
      end)
      assert.is_false(result)
      assert.is_true(local_scope.cancelled_caught)
    end)
  end)

  it("is level-triggered: every checkpoint raises (Trio "
    .. "test_cancel_edge_cases)", function()
    run(function()
      local s = loom.cancel_scope()
      local results = {}
      s:run(function()
        s:cancel()
        results[1] = raises_cancelled(loom.sleep_forever)
        results[2] = raises_cancelled(loom.sleep_forever)
        results[3] = raises_cancelled(loom.checkpoint)
        results[4] = raises_cancelled(loom.sleep, 0.1)
        results[5] = raises_cancelled(loom.checkpoint_if_cancelled)
      end)
      assert.same({ true, true, true, true, true }, results)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("a task that swallows Cancelled keeps running and leaves the scope "
    .. "normally", function()
    run(function()
      local s = loom.cancel_scope()
      local r = table.pack(s:run(function()
        s:cancel()
        assert.is_true(raises_cancelled(loom.checkpoint))
        return "kept going"
      end))
      assert.same({ n = 1, "kept going" }, r)
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("cancelled without a later checkpoint: cancelled_caught stays false "
    .. "(AnyIO test_cancelled_not_caught)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function() s:cancel() end)
      assert.is_true(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("another error raised while handling Cancelled propagates", function()
    run(function()
      local s = loom.cancel_scope()
      local err = H.capture_error(s.run, s, function()
        s:cancel()
        local _ = pcall(loom.checkpoint)
        error("cleanup failed", 0)
      end)
      assert.equal("cleanup failed", err)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("a pending cancel of an exited scope is not delivered (Trio "
    .. "test_cancel_scope_nesting)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        loom.cancel_shielded_checkpoint()
      end)
      loom.checkpoint()
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("the Cancelled message carries the reason", function()
    run(function()
      local s = loom.cancel_scope()
      local got
      s:run(function()
        s:cancel("operator asked")
        local _, e = pcall(loom.checkpoint)
        got = e
        error(e, 0)
      end)
      assert.is_true(loom.is_cancelled(got))
      H.contains(got.message, "operator asked")
      H.contains(tostring(got), "Cancelled: ")
    end)
  end)

  it("the first reason given is kept", function()
    run(function()
      local s = loom.cancel_scope()
      local got
      s:run(function()
        s:cancel("first")
        s:cancel("second")
        local _, e = pcall(loom.checkpoint)
        got = e
      end)
      H.contains(got.message, "first")
      assert.is_nil(got.message:find("second", 1, true))
    end)
  end)

  it("a deadline's Cancelled says 'deadline exceeded'", function()
    run(function()
      local got
      loom.move_on_after(0.005, function()
        local _, e = pcall(loom.sleep_forever)
        got = e
      end)
      assert.is_true(loom.is_cancelled(got))
      H.contains(got.message, "deadline exceeded")
    end)
  end)
end)

describe("nested cancel scopes", function()
  it("the outermost cancelled scope catches (Trio "
    .. "test_cancel_scope_nesting)", function()
    run(function()
      local s1, s2, s3 = loom.cancel_scope(), loom.cancel_scope(),
                         loom.cancel_scope()
      s1:run(function()
        s2:run(function()
          s3:run(function()
            s3:cancel()
            s2:cancel()
            loom.sleep_forever()
          end)
        end)
      end)
      assert.is_true(s3.cancel_called)
      assert.is_false(s3.cancelled_caught)
      assert.is_true(s2.cancel_called)
      assert.is_true(s2.cancelled_caught)
      assert.is_false(s1.cancel_called)
      assert.is_false(s1.cancelled_caught)
    end)
  end)

  it("a shield in between splits the chain: the inner cancelled scope "
    .. "catches first", function()
    local events, add = log()
    run(function()
      local s1 = loom.cancel_scope()
      local s2 = loom.cancel_scope{ shield = true }
      local s3 = loom.cancel_scope()
      s1:run(function()
        s2:run(function()
          s3:run(function()
            s1:cancel()
            s3:cancel()
            loom.checkpoint()
          end)
          add("in s2 after s3")
          loom.checkpoint()
          add("s2 checkpoint passed")
        end)
        loom.checkpoint()
        add("not reached")
      end)
      assert.same({ true, false, true },
        { s3.cancelled_caught, s2.cancelled_caught, s1.cancelled_caught })
    end)
    assert.same({ "in s2 after s3", "s2 checkpoint passed" }, events)
  end)

  it("code between the inner and the catching scope does not run", function()
    local events, add = log()
    run(function()
      local outer = loom.cancel_scope()
      outer:run(function()
        local inner = loom.cancel_scope()
        inner:run(function()
          inner:cancel()
          outer:cancel()
          loom.checkpoint()
        end)
        add("between")
      end)
      add("after")
      assert.is_true(outer.cancelled_caught)
    end)
    assert.same({ "after" }, events)
  end)

  it("an outer cancel reaches a blocked inner scope (AnyIO "
    .. "test_nested_move_on_after)", function()
    run(function()
      local sleep_completed, inner_completed = false, false
      local inner
      local outer = loom.cancel_scope{ deadline = loom.now() + 0.01 }
      outer:run(function()
        assert.equal(outer.deadline, loom.current_effective_deadline())
        inner = loom.cancel_scope{ deadline = loom.now() + 1 }
        inner:run(function()
          assert.equal(outer.deadline, loom.current_effective_deadline())
          loom.sleep(2)
          sleep_completed = true
        end)
        inner_completed = true
      end)
      assert.is_false(sleep_completed)
      assert.is_false(inner_completed)
      assert.is_true(outer.cancel_called)
      assert.is_true(outer.cancelled_caught)
      assert.is_false(inner.cancel_called)
      assert.is_false(inner.cancelled_caught)
    end)
  end)

  it("no Cancelled escapes an outer scope cancelled after an inner "
    .. "timeout (AnyIO test_escaping_cancelled_error_from_cancelled_task)",
    function()
      run(function()
        local s = loom.cancel_scope()
        s:run(function()
          loom.move_on_after(0.005, function() loom.sleep(1) end)
          s:cancel()
        end)
        assert.is_false(s.cancelled_caught)
        loom.sleep(0)
      end)
    end)

  it("a scope is not effective after it exited (AnyIO "
    .. "test_cancel_scope_cleared)", function()
    run(function()
      loom.move_on_after(0.005, function() loom.sleep(1) end)
      loom.sleep(0)
    end)
  end)

  it("a Cancelled re-raised after making the inner scope shielded is still "
    .. "caught by the outer scope (Trio "
    .. "test_unshield_while_cancel_propagating)", function()
    run(function()
      local outer, inner = loom.cancel_scope(), loom.cancel_scope()
      outer:run(function()
        inner:run(function()
          outer:cancel()
          local _, e = pcall(loom.checkpoint)
          inner.shield = true
          error(e, 0)
        end)
      end)
      assert.is_true(outer.cancelled_caught)
      assert.is_false(inner.cancelled_caught)
    end)
  end)

  it("triple nesting, checkpoint in the outer scope (AnyIO "
    .. "test_triple_nested_shield_checkpoint_in_outer)", function()
    run(function()
      local got_past = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          local scope1 = loom.cancel_scope()
          scope1:run(function()
            local scope2 = loom.cancel_scope()
            scope2:run(function()
              loom.cancel_scope{ shield = true }:run(function()
                scope1:cancel()
                scope2:cancel()
              end)
            end)
            loom.checkpoint()
            got_past = true
          end)
        end)
      end)
      assert.is_false(got_past)
    end)
  end)

  it("triple nesting, checkpoint in the middle scope (AnyIO "
    .. "test_triple_nested_shield_checkpoint_in_middle)", function()
    run(function()
      local got_past = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          local scope1 = loom.cancel_scope()
          scope1:run(function()
            loom.cancel_scope():run(function()
              loom.cancel_scope{ shield = true }:run(function()
                scope1:cancel()
              end)
              loom.checkpoint()
              got_past = true
            end)
          end)
        end)
      end)
      assert.is_false(got_past)
    end)
  end)
end)

describe("shielded scopes", function()
  it("block cancellation from outside (AnyIO test_shielding)", function()
    run(function()
      local inner_done, outer_done = false, false
      local inner
      local saved
      loom.task_group(function(tg)
        saved = tg
        tg:start_soon(function()
          loom.wait_all_tasks_blocked()
          tg:cancel()
        end)
        inner = loom.cancel_scope{ deadline = loom.now() + 10 }
        inner:run(function()
          inner.shield = true
          assert.is_true(inner.shield)
          loom.sleep(0.01)
          inner_done = true
        end)
        loom.sleep(1)
        outer_done = true
      end)
      assert.is_true(inner_done)
      assert.is_false(outer_done)
      assert.is_true(saved.cancel_scope.cancel_called)
      assert.is_false(inner.cancel_called)
    end)
  end)

  it("do not block their own cancel (AnyIO "
    .. "test_cancel_shielded_scope)", function()
    run(function()
      local s = loom.cancel_scope{ shield = true }
      s:run(function()
        assert.is_true(s.shield)
        s:cancel()
        assert.equal(-inf, loom.current_effective_deadline())
        assert.is_true(raises_cancelled(loom.sleep, 0))
      end)
    end)
  end)

  it("do not block their own cancel from another task (AnyIO "
    .. "test_shielding_immediate_scope_cancelled)", function()
    run(function()
      local sleep_completed = false
      loom.task_group(function(tg)
        local scope = loom.cancel_scope{ shield = true }
        scope:run(function()
          tg:start_soon(function()
            loom.wait_all_tasks_blocked()
            scope:cancel()
          end)
          loom.sleep(0.5)
          sleep_completed = true
        end)
        assert.is_true(scope.cancelled_caught)
      end)
      assert.is_false(sleep_completed)
    end)
  end)

  it("hide an outer cancellation until they exit (AnyIO "
    .. "test_cancel_from_shielded_scope)", function()
    run(function()
      loom.task_group(function(tg)
        local inner = loom.cancel_scope{ shield = true }
        inner:run(function()
          assert.is_true(inner.shield)
          tg:cancel()
          assert.equal(inf, loom.current_effective_deadline())
          loom.checkpoint()
        end)
        assert.equal(-inf, loom.current_effective_deadline())
        assert.is_true(raises_cancelled(loom.sleep, 0.01))
        assert.is_true(raises_cancelled(loom.sleep, 0.01))
      end)
    end)
  end)

  it("can be switched at run time (Trio test_cancel_shielding)",
    function()
      local events, add = log()
      run(function()
        local outer, inner = loom.cancel_scope(), loom.cancel_scope()
        outer:run(function()
          inner:run(function()
            loom.checkpoint()
            outer:cancel()
            add(raises_cancelled(loom.checkpoint))
            assert.is_false(inner.shield)
            inner.shield = true
            assert.is_true(inner.shield)
            -- the shield protects from outer
            loom.checkpoint()
            local innerest = loom.cancel_scope()
            innerest:run(function()
              innerest:cancel()
              -- but not from a scope inside it
              add(raises_cancelled(loom.checkpoint))
            end)
            loom.checkpoint()
            inner.shield = false
            add(raises_cancelled(loom.checkpoint))
            inner.shield = true
            loom.checkpoint()
            -- nor from inner itself; this one is caught by inner
            inner:cancel()
            loom.checkpoint()
            add("not reached")
          end)
          add("inner caught " .. tostring(inner.cancelled_caught))
        end)
      end)
      assert.same({ true, true, true, "inner caught true" }, events)
    end)

  it("set before entering, then dropped (Trio test_cancel_unbound)",
    function()
      run(function()
        local scope = loom.cancel_scope()
        scope.shield = true
        local outer = loom.cancel_scope()
        outer:run(function()
          scope:run(function()
            outer:cancel()
            loom.checkpoint()
            scope.shield = false
            assert.is_true(raises_cancelled(loom.checkpoint))
          end)
        end)
      end)
    end)

  it("dropping a shield wakes the tasks blocked inside (Trio "
    .. "test_cancel_shield_abort)", function()
    run(function()
      local record = {}
      local outer = loom.cancel_scope()
      outer:run(function()
        loom.task_group(function(tg)
          outer:cancel()
          tg.cancel_scope.shield = true
          tg:start_soon(function()
            record[#record + 1] = "sleeping"
            if raises_cancelled(loom.sleep_forever) then
              record[#record + 1] = "cancelled"
            end
          end)
          loom.wait_all_tasks_blocked()
          assert.same({ "sleeping" }, record)
          tg.cancel_scope.shield = false
          loom.cancel_scope{ shield = true }:run(function()
            loom.wait_all_tasks_blocked()
            assert.same({ "sleeping", "cancelled" }, record)
          end)
        end)
      end)
      assert.same({ "sleeping", "cancelled" }, record)
    end)
  end)

  it("switched off in a child exposes its group's cancellation (AnyIO "
    .. "test_shielding_mutate)", function()
    run(function()
      local completed = false
      local reached = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          local scope = loom.cancel_scope()
          scope:run(function()
            scope.shield = true
            loom.sleep(0.02)
            completed = true
            scope.shield = false
            loom.sleep(1)
            reached = true
          end)
        end)
        loom.wait_all_tasks_blocked()
        tg:cancel()
      end)
      assert.is_true(completed)
      assert.is_false(reached)
    end)
  end)

  it("protect cleanup after a cancellation", function()
    local events, add = log()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        local _, e = pcall(loom.sleep_forever)
        add(raises_cancelled(loom.checkpoint))
        local guard = loom.cancel_scope{ deadline = loom.now() + 1 }
        guard:run(function()
          guard.shield = true
          assert.is_true(guard.deadline < inf)
          assert.equal(guard.deadline, loom.current_effective_deadline())
          loom.sleep(0.001)
          add("cleanup done")
        end)
        assert.equal(-inf, loom.current_effective_deadline())
        error(e, 0)
      end)
      assert.is_true(s.cancelled_caught)
    end)
    assert.same({ true, "cleanup done" }, events)
  end)
end)

describe("deadlines", function()
  it("a deadline cancels the scope when it passes", function()
    run(function()
      local s = loom.cancel_scope{ deadline = loom.now() + 0.01 }
      local reached = false
      s:run(function()
        loom.sleep_forever()
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancel_called)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("a deadline in the past cancels on entry (AnyIO "
    .. "test_deadline_reached_on_start)", function()
    run(function()
      local reached = false
      local s = loom.move_on_after(0, function()
        assert.equal(-inf, loom.current_effective_deadline())
        assert.equal(-inf, loom.current_effective_deadline())
        loom.sleep(0)
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancelled_caught)
      s = loom.move_on_at(loom.now() - 10, function() loom.checkpoint() end)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("deadline can be read and set while active (Trio test_basic_timeout)",
    function()
      run(function()
        local start = loom.now()
        local s = loom.cancel_scope()
        s:run(function()
          assert.equal(inf, s.deadline)
          s.deadline = start + 1
          assert.equal(start + 1, s.deadline)
        end)
        assert.is_false(s.cancel_called)
      end)
    end)

  it("pushing the deadline later avoids a timeout (AnyIO "
    .. "test_deadline_moved)", function()
    run(function()
      local s = loom.cancel_scope{ deadline = loom.now() + 0.01 }
      s:run(function()
        s.deadline = s.deadline + 0.3
        loom.sleep(0.02)
      end)
      assert.is_false(s.cancel_called)
    end)
  end)

  it("pulling the deadline earlier fires sooner", function()
    run(function()
      local t0 = loom.now()
      local s = loom.cancel_scope{ deadline = t0 + 10 }
      s:run(function()
        loom.checkpoint()
        s.deadline = loom.now() + 0.01
        loom.sleep(5)
      end)
      assert.is_true(s.cancelled_caught)
      assert.is_true(loom.now() - t0 < 2)
    end)
  end)

  it("setting a deadline in the past cancels at the next checkpoint (Trio "
    .. "test_basic_timeout)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        loom.checkpoint()
        s.deadline = loom.now() + 10
        loom.checkpoint()
        s.deadline = loom.now() - 1
        assert.is_true(s.cancel_called)
        assert.is_true(raises_cancelled(loom.checkpoint))
        assert.is_true(raises_cancelled(loom.checkpoint))
      end)
    end)
  end)

  it("a deadline set in the past from another task wakes the sleeper",
    function()
      run(function()
        local s = loom.cancel_scope()
        local t0 = loom.now()
        loom.task_group(function(tg)
          tg:start_soon(function() s:run(function() loom.sleep(10) end) end)
          loom.wait_all_tasks_blocked()
          s.deadline = loom.now() - 1
          assert.is_true(s.cancel_called)
        end)
        assert.is_true(s.cancelled_caught)
        assert.is_true(loom.now() - t0 < 5)
      end)
    end)

  it("deadline = nil removes the deadline", function()
    run(function()
      local s = loom.cancel_scope{ deadline = loom.now() + 0.005 }
      s:run(function()
        s.deadline = nil
        assert.equal(inf, s.deadline)
        loom.sleep(0.02)
      end)
      assert.is_false(s.cancel_called)
    end)
  end)

  it("moving the deadline after a cancel does not un-cancel",
    function()
      run(function()
        local s = loom.cancel_scope{ deadline = loom.now() + 0.005 }
        s:run(function()
          assert.is_true(raises_cancelled(loom.sleep, 1))
          s.deadline = loom.now() + 100
          assert.is_true(s.cancel_called)
          assert.is_true(raises_cancelled(loom.checkpoint))
        end)
      end)
    end)

  it("cancel_called turns true once the deadline passes, before any "
    .. "checkpoint, and never goes back", function()
    run(function()
      local s = loom.cancel_scope{ deadline = loom.now() + 0.005 }
      s:run(function()
        H.busy(0.01)
        assert.is_true(s.cancel_called)
        s.deadline = s.deadline + 100
        assert.is_true(s.cancel_called)
      end)
    end)
  end)

  it("cancel_called of an unentered scope turns true once its deadline "
    .. "passed (Trio test_cancel_unbound)", function()
    run(function()
      local s = loom.cancel_scope{ deadline = loom.now() + 1 }
      assert.is_false(s.cancel_called)
      s.deadline = s.deadline - 2
      assert.is_true(s.cancel_called)
      s.deadline = s.deadline + 2
      assert.is_true(s.cancel_called)
    end)
  end)

  it("a deadline passing after exit leaves cancel_called false", function()
    run(function()
      local s = loom.move_on_after(0.005, function() end)
      H.busy(0.01)
      assert.is_false(s.cancel_called)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("a deadline set before entering applies on entry", function()
    run(function()
      local s = loom.cancel_scope()
      s.deadline = loom.now() - 1
      local reached = false
      s:run(function()
        loom.checkpoint()
        reached = true
      end)
      assert.is_false(reached)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("loom.current_effective_deadline", function()
  it("is math.huge with no deadline", function()
    run(function()
      assert.equal(inf, loom.current_effective_deadline())
    end)
  end)

  it("is the minimum up to the first shield (Trio "
    .. "test_current_effective_deadline)", function()
    run(function()
      local base = loom.now() + 100
      local scope1 = loom.cancel_scope{ deadline = base + 5 }
      scope1:run(function()
        local scope2 = loom.cancel_scope{ deadline = base + 10 }
        scope2:run(function()
          assert.equal(base + 5, loom.current_effective_deadline())
          scope2.deadline = base + 3
          assert.equal(base + 3, loom.current_effective_deadline())
          scope2.deadline = base + 10
          assert.equal(base + 5, loom.current_effective_deadline())
          scope2.shield = true
          assert.equal(base + 10, loom.current_effective_deadline())
          scope2.shield = false
          assert.equal(base + 5, loom.current_effective_deadline())
          scope1:cancel()
          assert.equal(-inf, loom.current_effective_deadline())
          scope2.shield = true
          assert.equal(base + 10, loom.current_effective_deadline())
        end)
        assert.equal(-inf, loom.current_effective_deadline())
      end)
      assert.equal(inf, loom.current_effective_deadline())
    end)
  end)

  it("stops at a shield (AnyIO test_shielded_deadline)", function()
    run(function()
      loom.move_on_after(10, function()
        loom.cancel_scope{ shield = true }:run(function()
          loom.move_on_after(1000, function()
            assert.is_true(loom.current_effective_deadline() - loom.now()
              > 900)
          end)
        end)
      end)
    end)
  end)

  it("does not yield", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() add("child") end)
        loom.current_effective_deadline()
        add("host")
      end)
    end)
    assert.same({ "host", "child" }, events)
  end)
end)

describe("scope:run", function()
  it("refuses a second run of an exited scope", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function() end)
      local ran = false
      local err = H.capture_error(s.run, s, function() ran = true end)
      assert.is_false(ran)
      H.contains(H.message(err), "only once")
      H.contains(H.message(err), "already exited")
    end)
  end)

  it("refuses to re-enter an active scope", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        local err = H.capture_error(s.run, s, function() end)
        H.contains(H.message(err), "only once")
      end)
    end)
  end)

  it("refuses to enter a scope active in another task", function()
    run(function()
      local s = loom.cancel_scope()
      loom.task_group(function(tg)
        tg:start_soon(function() s:run(loom.sleep_forever) end)
        loom.wait_all_tasks_blocked()
        local err = H.capture_error(s.run, s, function() end)
        H.contains(H.message(err), "only once")
        tg:cancel()
      end)
    end)
  end)

  it("a scope cancelled after a refused re-run still works", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        pcall(s.run, s, function() end)
        s:cancel()
        loom.checkpoint()
      end)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("loom.move_on_after / loom.move_on_at", function()
  it("return the scope followed by fn's results", function()
    run(function()
      local r = table.pack(loom.move_on_after(1, function(a, ...)
        assert.equal(0, select("#", ...))
        return a, nil, "z"
      end, "a"))
      assert.equal(4, r.n)
      assert.is_false(r[1].cancel_called)
      assert.same({ "a", nil, "z" }, { r[2], r[3], r[4] })
      r = table.pack(loom.move_on_at(loom.now() + 1, function(x)
        return x
      end, 5))
      assert.equal(2, r.n)
      assert.equal(5, r[2])
    end)
  end)

  it("return only the scope after a timeout (AnyIO "
    .. "test_move_on_after)", function()
    run(function()
      local result = false
      local r = table.pack(loom.move_on_after(0.01, function()
        loom.sleep(1)
        result = true
        return "x"
      end))
      assert.equal(1, r.n)
      assert.is_false(result)
      assert.is_true(r[1].cancel_called)
      assert.is_true(r[1].cancelled_caught)
    end)
  end)

  it("move_on_after(0) times out at the first checkpoint (AnyIO "
    .. "test_move_on_after[instant])", function()
    run(function()
      local s = loom.move_on_after(0, function() loom.sleep(1) end)
      assert.is_true(s.cancel_called)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("move_on_after(nil) has no deadline (AnyIO "
    .. "test_move_on_after_no_timeout)", function()
    run(function()
      local result = false
      local s = loom.move_on_after(nil, function()
        assert.equal(inf, loom.current_effective_deadline())
        loom.sleep(0.01)
        result = true
      end)
      assert.is_true(result)
      assert.is_false(s.cancel_called)
    end)
  end)

  it("move_on_at(nil) has no deadline", function()
    run(function()
      local s = loom.move_on_at(nil, function()
        assert.equal(inf, loom.current_effective_deadline())
      end)
      assert.is_false(s.cancel_called)
    end)
  end)

  it("move_on_after computes the deadline from now", function()
    run(function()
      local before = loom.now()
      local s = loom.move_on_after(5, function() end)
      assert.is_true(s.deadline >= before + 5)
      assert.is_true(s.deadline <= loom.now() + 5)
    end)
  end)

  it("move_on_at sets the given deadline", function()
    run(function()
      local d = loom.now() + 7
      local s = loom.move_on_at(d, function()
        assert.equal(d, loom.current_effective_deadline())
      end)
      assert.equal(d, s.deadline)
    end)
  end)

  it("move_on_at in the past cancels at once (Trio test_sleep)", function()
    run(function()
      loom.move_on_at(loom.now(), function()
        assert.is_true(raises_cancelled(loom.sleep, 0))
      end)
    end)
  end)

  it("a timeout inside a task group ends the group", function()
    run(function()
      local s = loom.move_on_after(0.01, function()
        loom.task_group(function(tg)
          tg:start_soon(loom.sleep, 2)
          loom.sleep(2)
        end)
      end)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)

describe("loom.fail_after / loom.fail_at", function()
  it("return only fn's results when in time", function()
    run(function()
      local r = table.pack(loom.fail_after(1, function(a, ...)
        assert.equal(0, select("#", ...))
        return a, nil
      end, "a"))
      assert.same({ n = 2, "a", nil }, r)
      r = table.pack(loom.fail_at(loom.now() + 1, function() end))
      assert.equal(0, r.n)
    end)
  end)

  it("raise a bare TimeoutError on timeout (AnyIO test_fail_after)",
    function()
      run(function()
        for _, delay in ipairs({ 0, 0.01 }) do
          local reached = false
          local err = H.capture_error(loom.fail_after, delay, function()
            loom.sleep(1)
            reached = true
          end)
          assert.is_true(loom.is(err, loom.TimeoutError))
          assert.is_false(loom.is(err, loom.ErrorGroup))
          assert.is_false(reached)
        end
      end)
    end)

  it("fail_at raises TimeoutError", function()
    run(function()
      local err = H.capture_error(loom.fail_at, loom.now() + 0.01,
                                  loom.sleep_forever)
      assert.is_true(loom.is(err, loom.TimeoutError))
    end)
  end)

  it("fail_after(nil) has no deadline (AnyIO test_fail_after_no_timeout)",
    function()
      run(function()
        local done = false
        loom.fail_after(nil, function()
          assert.equal(inf, loom.current_effective_deadline())
          loom.sleep(0.01)
          done = true
        end)
        assert.is_true(done)
      end)
    end)

  it("an explicit cancel before the deadline is no TimeoutError ("
    .. "AnyIO test_fail_after_cancelled_before_deadline)", function()
    run(function()
      local outer = loom.cancel_scope()
      local r = table.pack(outer:run(function()
        return loom.fail_after(1, function()
          outer:cancel()
          loom.checkpoint()
          return "not reached"
        end)
      end))
      assert.equal(0, r.n)
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("a timeout is no TimeoutError when nothing was interrupted", function()
    run(function()
      local r = table.pack(loom.fail_after(0.005, function()
        H.busy(0.01)
        return "done"
      end))
      assert.same({ n = 1, "done" }, r)
    end)
  end)

  it("TimeoutError comes out bare even with a task group inside ("
    .. "AnyIO test_timeout_error_with_multiple_cancellations)", function()
    run(function()
      local err = H.capture_error(loom.fail_after, 0.01, function()
        loom.task_group(function(tg)
          tg:start_soon(loom.sleep, 2)
          loom.sleep(2)
        end)
      end)
      assert.is_true(loom.is(err, loom.TimeoutError))
    end)
  end)

  it("works after a cancelled task group (AnyIO "
    .. "test_fail_after_after_cancellation)", function()
    run(function()
      loom.task_group(function(tg)
        tg:cancel()
        loom.sleep_forever()
      end)
      local block_complete = false
      local err = H.capture_error(loom.fail_after, 0.01, function()
        loom.sleep(0.5)
        block_complete = true
      end)
      assert.is_true(loom.is(err, loom.TimeoutError))
      assert.is_false(block_complete)
    end)
  end)

  it("an outer explicit cancel takes precedence over an inner fail_after "
    .. "(AnyIO test_nested_fail_after)", function()
    local events, add = log()
    run(function()
      local scope
      loom.task_group(function(tg)
        scope = loom.cancel_scope()
        scope:run(function()
          loom.cancel_scope():run(function()
            tg:start_soon(function()
              loom.wait_all_tasks_blocked()
              scope:cancel()
            end)
            loom.fail_after(1, function()
              loom.sleep(2)
              add("inner")
            end)
            add("middle")
          end)
          add("outer")
        end)
      end)
      assert.is_true(scope.cancel_called)
      assert.is_true(scope.cancelled_caught)
    end)
    assert.same({}, events)
  end)

  it("a shielded fail_after still fires inside a cancelled scope ("
    .. "Trio test_fail_after_fails_even_if_shielded)", function()
    run(function()
      local outer = loom.cancel_scope()
      local err = H.capture_error(outer.run, outer, function()
        outer:cancel()
        local shield = loom.cancel_scope{ shield = true }
        shield:run(loom.fail_after, 0.01, loom.sleep, 1)
      end)
      assert.is_true(loom.is(err, loom.TimeoutError))
    end)
  end)

  it("a shielded fail_after in a group body gives ErrorGroup[TimeoutError] "
    .. "(AnyIO test_nested_shield)", function()
    run(function()
      local err = H.capture_error(loom.task_group, function(tg)
        local scope = loom.cancel_scope()
        scope:run(function()
          loom.cancel_scope{ shield = true }:run(function()
            tg:start_soon(function()
              loom.wait_all_tasks_blocked()
              scope:cancel()
            end)
            loom.fail_after(0.02, function() loom.sleep(2) end)
          end)
        end)
      end)
      assert.is_true(loom.is(err, loom.ErrorGroup))
      assert.equal(1, #err.errors)
      assert.is_true(loom.is(err.errors[1], loom.TimeoutError))
    end)
  end)

  it("errors other than Cancelled pass through fail_after", function()
    run(function()
      local err = H.capture_error(loom.fail_after, 1, function()
        error("own", 0)
      end)
      assert.equal("own", err)
    end)
  end)
end)

describe("error groups leaving a cancel scope", function()
  local function cancelled_obj()
    local _, e = pcall(loom.checkpoint)
    assert(loom.is_cancelled(e))
    return e
  end

  it("a group of only Cancelled is swallowed", function()
    run(function()
      local s = loom.cancel_scope()
      local r = table.pack(s:run(function()
        s:cancel()
        local c = cancelled_obj()
        error(loom.ErrorGroup("m", { c, loom.ErrorGroup("n", { c }) }))
      end))
      assert.equal(0, r.n)
      assert.is_true(s.cancelled_caught)
    end)
  end)

  it("Cancelled leaves are removed, nesting and message kept",
    function()
      run(function()
        local s = loom.cancel_scope()
        local err = H.capture_error(s.run, s, function()
          s:cancel()
          local c = cancelled_obj()
          error(loom.ErrorGroup("outer", {
            c, loom.ErrorGroup("inner", { c, "x" }), "y" }))
        end)
        assert.is_true(loom.is(err, loom.ErrorGroup))
        assert.equal("outer", err.message)
        assert.equal(2, #err.errors)
        assert.equal("inner", err.errors[1].message)
        assert.same({ "x" }, err.errors[1].errors)
        assert.equal("y", err.errors[2])
        assert.is_false(s.cancelled_caught)
      end)
    end)

  it("a group without Cancelled passes through unchanged",
    function()
      run(function()
        local s = loom.cancel_scope()
        local eg = loom.ErrorGroup("m", { "x" })
        local err = H.capture_error(s.run, s, function()
          s:cancel()
          error(eg)
        end)
        assert.is_true(rawequal(eg, err))
        assert.is_false(s.cancelled_caught)
      end)
    end)

  it("a scope that does not catch leaves the group alone", function()
    run(function()
      local outer, s = loom.cancel_scope(), loom.cancel_scope()
      outer:run(function()
        outer:cancel()
        local eg = loom.ErrorGroup("m", { cancelled_obj(), "x" })
        local err = H.capture_error(s.run, s, function() error(eg) end)
        assert.is_true(rawequal(eg, err))
        assert.is_false(s.cancelled_caught)
      end)
    end)
  end)

  it("Trio test_cancel_scope_exceptiongroup_filtering", function()
    run(function()
      local outer = loom.cancel_scope()
      local err = H.capture_error(outer.run, outer, function()
        loom.task_group(function(tg)
          tg:start_soon(loom.sleep_forever)
          tg:start_soon(loom.sleep_forever)
          tg:cancel()
          loom.cancel_scope{ shield = true }:run(loom.wait_all_tasks_blocked)
          tg:start_soon(loom.sleep_forever)
          outer:cancel()
          tg:start_soon(function() error("key", 0) end)
        end)
      end)
      assert.is_true(loom.is(err, loom.ErrorGroup))
      assert.same({ "key" }, err.errors)
      assert.is_false(outer.cancelled_caught)
    end)
  end)
end)

-- Only Cancelled objects loom issued count as a cancellation. loom knows the
-- one it raised last without a table look-up; these pin that the shortcut
-- never changes the answer.
describe("which Cancelled counts", function()
  it("a hand-made Cancelled raised right after a real cancellation is an "
    .. "error, reported with its traceback", function()
    local err
    run(function()
      err = H.capture_error(loom.task_group, function(tg)
        tg:start_soon(function()
          local ok, real = pcall(loom.sleep_forever)
          assert.is_false(ok)
          assert.is_true(loom.is_cancelled(real))
          local fake = setmetatable({ message = "fake" }, loom.Cancelled)
          assert.is_false(loom.is_cancelled(fake))
          error(fake)
        end)
        loom.checkpoint()
        loom.current_task():cancel() -- cancels the group with the body
      end)
    end)
    -- The body's task was cancelled (its own Cancelled is not reported);
    -- the child's hand-made one is a failure, with its traceback.
    assert.is_true(loom.is(err, loom.ErrorGroup))
    assert.equal(1, #err.errors)
    assert.equal("fake", err.errors[1].message)
    H.contains(err.tracebacks[1], "cancel_scope_spec.lua")
  end)

  it("the Cancelled a finished scope issued still counts when re-raised "
    .. "later", function()
    run(function()
      local kept
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        local _, e = pcall(loom.checkpoint)
        kept = e
      end)
      -- Another scope is cancelled since: loom's shortcut points at its
      -- object now, the first one is still an issued Cancelled.
      loom.move_on_after(0, function() loom.checkpoint() end)
      collectgarbage()
      assert.is_true(loom.is_cancelled(kept))
      local h
      loom.task_group(function(tg)
        h = tg:start_soon(function() error(kept) end)
      end)
      assert.equal("cancelled", h:status())
    end)
  end)

  it("cancelling a hundred tasks at once ends each one cancelled", function()
    run(function()
      local hs = {}
      loom.task_group(function(tg)
        for i = 1, 100 do hs[i] = tg:start_soon(loom.sleep_forever) end
        loom.checkpoint()
        tg:cancel()
      end)
      for i = 1, 100 do assert.equal("cancelled", hs[i]:status()) end
    end)
  end)
end)

-- A checkpoint skips the walk up its scopes while no attached scope of the
-- runtime is cancelled (core.stats().cancelled_scopes counts those); these
-- pin that every way a scope gets cancelled is still seen.
describe("cancelled scopes are counted", function()
  local core = require("loom.core")
  local function count() return core.stats().cancelled_scopes end

  it("a scope cancelled before it is entered is counted once entered, "
    .. "cancels at its first checkpoint, and leaves the count on exit",
    function()
    run(function()
      assert.equal(0, count())
      local s = loom.cancel_scope()
      s:cancel()
      assert.equal(0, count())
      local reached, inside = false, nil
      s:run(function()
        inside = count()
        loom.checkpoint()
        reached = true
      end)
      assert.equal(1, inside)
      assert.is_false(reached)
      assert.is_true(s.cancelled_caught)
      assert.equal(0, count())
      loom.checkpoint() -- nothing is cancelled any more
    end)
  end)

  it("a scope cancelled after it was left is not counted", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function() assert.equal(0, count()) end)
      s:cancel()
      assert.is_true(s.cancel_called)
      assert.equal(0, count())
    end)
  end)

  it("deadlines, h:cancel() and group cancels are all seen by the next "
    .. "checkpoint", function()
    run(function()
      local caught = loom.move_on_after(0.001, function()
        while true do loom.checkpoint() end
      end).cancelled_caught
      assert.is_true(caught)
      local h
      loom.task_group(function(tg)
        h = tg:start_soon(function()
          while true do loom.checkpoint() end
        end)
        loom.checkpoint()
        h:cancel()
      end)
      assert.equal("cancelled", h:status())
      loom.task_group(function(tg)
        tg:start_soon(function()
          while true do loom.checkpoint() end
        end)
        loom.checkpoint()
        tg:cancel()
      end)
      assert.equal(0, count())
    end)
  end)

  it("a shielded scope inside a cancelled one is not cancelled, and the "
    .. "outer one still is once the shield is left", function()
    run(function()
      local outer = loom.cancel_scope()
      local inner_done, after = false, false
      outer:run(function()
        outer:cancel()
        loom.cancel_scope{ shield = true }:run(function()
          loom.checkpoint()
          inner_done = true
        end)
        loom.checkpoint()
        after = true
      end)
      assert.is_true(inner_done)
      assert.is_false(after)
      assert.is_true(outer.cancelled_caught)
      assert.equal(0, count())
    end)
  end)
end)
