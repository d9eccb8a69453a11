-- loom.condition(): ported from AnyIO tests/test_synchronization.py
-- (TestCondition) and Trio _tests/test_sync.py (test_Condition).
local loom = require("loom")

local H = require("helpers")
local raises, fails_with = H.raises, H.fails_with

local NOT_HOLDING = "The current task is not holding the underlying lock"

describe("loom.condition", function()
  it("waits inside a <close> guard (test_contextmanager)", function()
    loom.run(function()
      local condition = loom.condition()
      loom.task_group(function(tg)
        local g <close> = condition:acquire()
        assert.equal(condition, g)
        assert.is_true(condition:locked())
        tg:start_soon(function()
          local _ <close> = condition:acquire()
          condition:notify_all()
        end)
        condition:wait()
        assert.is_true(condition:locked())
      end)
      assert.is_false(condition:locked())
    end)
  end)

  it("works with manual acquire and release (test_manual_acquire)",
    function()
      loom.run(function()
        local condition = loom.condition()
        loom.task_group(function(tg)
          condition:acquire()
          assert.is_true(condition:locked())
          tg:start_soon(function()
            condition:acquire()
            condition:notify_all()
            condition:release()
          end)
          condition:wait()
          condition:release()
        end)
      end)
    end)

  it("acquire_nowait takes the lock or raises WouldBlock", function()
    loom.run(function()
      local condition = loom.condition()
      assert.equal(condition, condition:acquire_nowait())
      assert.is_true(condition:locked())
      loom.task_group(function(tg)
        tg:start_soon(function()
          raises(loom.WouldBlock, condition.acquire_nowait, condition)
        end)
      end)
      fails_with("Attempted to acquire an already held Lock",
        condition.acquire_nowait, condition)
      condition:release()
    end)
  end)

  it("does not return from a cancelled wait as notified (test_wait_cancel)",
    function()
      local task_started, notified = false, false
      loom.run(function()
        local event = loom.event()
        local condition = loom.condition()
        loom.task_group(function(tg)
          tg:start_soon(function()
            task_started = true
            local _ <close> = condition:acquire()
            event:set()
            condition:wait()
            notified = true
          end)
          event:wait()
          loom.wait_all_tasks_blocked()
          tg:cancel()
        end)
        assert.is_false(condition:locked())
      end)
      assert.is_true(task_started)
      assert.is_false(notified)
    end)

  it("passes a notification on past a cancelled waiter "
    .. "(test_notification_handover_on_cancel)", function()
    loom.run(function()
      local condition = loom.condition()
      local woke = {}
      local function acquirer(scope, name)
        scope:run(function()
          local _ <close> = condition:acquire()
          condition:wait()
          woke[#woke + 1] = name
        end)
      end
      loom.task_group(function(tg)
        local scope1 = loom.cancel_scope()
        local scope2 = loom.cancel_scope({ deadline = loom.now() + 3 })
        tg:start_soon(acquirer, scope1, "first")
        tg:start_soon(acquirer, scope2, "second")
        loom.wait_all_tasks_blocked()
        local _ <close> = condition:acquire()
        scope1:cancel()
        condition:notify(1)
      end)
      assert.same({ "second" }, woke)
    end)
  end)

  it("refuses wait, notify and notify_all without the lock", function()
    loom.run(function()
      local condition = loom.condition()
      fails_with(NOT_HOLDING, condition.wait, condition)
      fails_with(NOT_HOLDING, condition.notify, condition)
      fails_with(NOT_HOLDING, condition.notify_all, condition)
      loom.task_group(function(tg)
        local _ <close> = condition:acquire()
        tg:start_soon(function()
          fails_with(NOT_HOLDING, condition.notify, condition, 1)
          fails_with("The current task is not holding this lock",
            condition.release, condition)
        end)
      end)
    end)
  end)

  it("counts waiters and reports its lock (test_statistics)", function()
    loom.run(function()
      local condition = loom.condition()
      loom.task_group(function(tg)
        local st = condition:statistics()
        assert.is_false(st.lock_statistics.locked)
        assert.equal(0, st.tasks_waiting)
        do
          local _ <close> = condition:acquire()
          assert.is_true(condition:statistics().lock_statistics.locked)
          assert.equal(0, condition:statistics().tasks_waiting)
        end
        for i = 1, 2 do
          tg:start_soon(function()
            local _ <close> = condition:acquire()
            condition:wait()
          end)
          loom.wait_all_tasks_blocked()
          assert.equal(i, condition:statistics().tasks_waiting)
        end
        for i = 1, 0, -1 do
          do
            local _ <close> = condition:acquire()
            condition:notify(1)
          end
          loom.wait_all_tasks_blocked()
          assert.equal(i, condition:statistics().tasks_waiting)
        end
      end)
      assert.is_false(condition:statistics().lock_statistics.locked)
      assert.equal(0, condition:statistics().tasks_waiting)
    end)
  end)

  it("wait_for waits until the predicate holds (test_wait_for)", function()
    local result = nil
    loom.run(function()
      local value = nil
      local condition = loom.condition()
      loom.task_group(function(tg)
        tg:start_soon(function()
          local _ <close> = condition:acquire()
          result = condition:wait_for(function() return value end)
        end)
        loom.wait_all_tasks_blocked()
        do
          local _ <close> = condition:acquire()
          condition:notify_all()
        end
        loom.wait_all_tasks_blocked()
        assert.is_nil(result)
        value = "foo"
        local _ <close> = condition:acquire()
        condition:notify_all()
      end)
      local _ <close> = condition:acquire()
      assert.equal(7, condition:wait_for(function() return 7 end))
      fails_with("bad argument #1 to 'wait_for' (function expected, got nil)",
        condition.wait_for, condition, nil)
    end)
    assert.equal("foo", result)
  end)

  it("notifies the oldest waiters first and hands the lock over "
    .. "(Trio test_Condition)", function()
    loom.run(function()
      local lock = loom.lock()
      local c = loom.condition(lock)
      assert.is_false(lock:locked())
      assert.is_false(c:locked())
      c:acquire()
      assert.is_true(lock:locked())
      assert.is_true(c:locked())
      c:release()

      local finished = {}
      local function waiter(i)
        local _ <close> = c:acquire()
        c:wait()
        finished[#finished + 1] = i
      end
      loom.task_group(function(tg)
        for i = 0, 2 do
          tg:start_soon(waiter, i)
          loom.wait_all_tasks_blocked()
        end
        do
          local _ <close> = c:acquire()
          c:notify()
        end
        assert.is_true(c:locked())   -- handed straight to waiter 0
        loom.wait_all_tasks_blocked()
        assert.same({ 0 }, finished)
        do
          local _ <close> = c:acquire()
          c:notify_all()
        end
        loom.wait_all_tasks_blocked()
        assert.same({ 0, 1, 2 }, finished)
      end)

      finished = {}
      loom.task_group(function(tg)
        for i = 0, 2 do
          tg:start_soon(waiter, i)
          loom.wait_all_tasks_blocked()
        end
        do
          local _ <close> = c:acquire()
          c:notify(2)
          local st = c:statistics()
          assert.equal(1, st.tasks_waiting)
          assert.equal(2, st.lock_statistics.tasks_waiting)
        end
        -- leaving the guard handed the lock to the first notified task
        assert.equal(1, c:statistics().lock_statistics.tasks_waiting)
        loom.wait_all_tasks_blocked()
        assert.same({ 0, 1 }, finished)
        local _ <close> = c:acquire()
        c:notify_all()
      end)

      -- A cancelled wait still returns holding the lock.
      local held_after = nil
      local scope = loom.cancel_scope()
      scope:run(function()
        local _ <close> = c:acquire()
        scope:cancel()
        local _, err = pcall(c.wait, c)
        held_after = c:locked() and lock:statistics().owner
        error(err, 0)
      end)
      assert.equal(loom.current_task(), held_after)
      assert.is_false(c:locked())
    end)
  end)

  it("re-acquires the lock shielded after a cancelled wait",
    function()
      loom.run(function()
        local c = loom.condition()
        local log = {}
        loom.task_group(function(tg)
          local h = tg:start_soon(function()
            local _ <close> = c:acquire()
            local ok, err = pcall(c.wait, c)
            log[#log + 1] = (not ok and loom.is_cancelled(err))
              and "cancelled" or "other"
            log[#log + 1] = c:statistics().lock_statistics.owner
              == loom.current_task() and "holding" or "not holding"
            error(err, 0)
          end)
          loom.wait_all_tasks_blocked()
          local _ <close> = c:acquire()
          h:cancel()
          loom.wait_all_tasks_blocked()
          -- cancelled out of the condition, now queued on the lock
          assert.equal(0, c:statistics().tasks_waiting)
          assert.equal(1, c:statistics().lock_statistics.tasks_waiting)
          assert.same({}, log)
        end)
        assert.same({ "cancelled", "holding" }, log)
        assert.is_false(c:locked())
      end)
    end)

  it("returns normally when notified before a cancellation", function()
    loom.run(function()
      local c = loom.condition()
      local log = {}
      loom.task_group(function(tg)
        local h = tg:start_soon(function()
          local _ <close> = c:acquire()
          c:wait()
          log[#log + 1] = "notified"
          local ok, err = pcall(loom.checkpoint)
          log[#log + 1] = (not ok and loom.is_cancelled(err)) and "cancelled"
            or "not cancelled"
          error(err, 0)
        end)
        loom.wait_all_tasks_blocked()
        local _ <close> = c:acquire()
        c:notify()
        h:cancel()
      end)
      assert.same({ "notified", "cancelled" }, log)
    end)
  end)

  it("checks its arguments and prints its state", function()
    fails_with("loom.Lock expected, got loom.Semaphore", loom.condition,
      loom.semaphore(1))
    local c = loom.condition()
    fails_with("n must be >= 0", c.notify, c, -1)
    fails_with("number has no integer representation", c.notify, c, 1.5)
    fails_with("loom.Condition expected, got loom.Lock", c.locked,
      loom.lock())
    assert.matches("^loom%.Condition: 0x%x+ %(unlocked, 0 waiting%)$",
      tostring(c))
    assert.equal(0, c:statistics().tasks_waiting)
    assert.is_nil(c:statistics().lock_statistics.owner)
  end)
end)
