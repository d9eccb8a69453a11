-- loom.lock(): ported from AnyIO tests/test_synchronization.py (TestLock)
-- and Trio _tests/test_sync.py (test_Lock_and_StrictFIFOLock, the generic
-- lock tests), plus the guard and hand-off rules of loom.
local loom = require("loom")

local H = require("helpers")
local raises, fails_with = H.raises, H.fails_with

describe("loom.lock", function()
  it("is held through a <close> guard (test_contextmanager)", function()
    local results = {}
    local lock = loom.lock()
    loom.run(function()
      loom.task_group(function(tg)
        local g <close> = lock:acquire()
        assert.equal(lock, g)
        tg:start_soon(function()
          assert.is_true(lock:locked())
          local _ <close> = lock:acquire()
          results[#results + 1] = "2"
        end)
        loom.wait_all_tasks_blocked()
        results[#results + 1] = "1"
      end)
    end)
    assert.is_false(lock:locked())
    assert.same({ "1", "2" }, results)
  end)

  it("can be acquired and released by hand (test_manual_acquire)", function()
    local results = {}
    local lock = loom.lock()
    loom.run(function()
      loom.task_group(function(tg)
        lock:acquire()
        tg:start_soon(function()
          assert.is_true(lock:locked())
          lock:acquire()
          results[#results + 1] = "2"
          lock:release()
        end)
        loom.wait_all_tasks_blocked()
        results[#results + 1] = "1"
        lock:release()
      end)
    end)
    assert.is_false(lock:locked())
    assert.same({ "1", "2" }, results)
  end)

  it("yields on an uncontended acquire unless fast_acquire is set",
    function()
      loom.run(function()
        for _, fast in ipairs({ false, true }) do
          local lock = loom.lock({ fast_acquire = fast })
          local other_ran = false
          loom.task_group(function(tg)
            tg:start_soon(function() other_ran = true end)
            local _ <close> = lock:acquire()
            assert.equal(not fast, other_ran)
          end)
        end
      end)
    end)

  it("acquire_nowait takes a free lock, else raises WouldBlock", function()
    loom.run(function()
      local lock = loom.lock()
      assert.equal(lock, lock:acquire_nowait())
      assert.is_true(lock:locked())
      loom.task_group(function(tg)
        tg:start_soon(function()
          raises(loom.WouldBlock, lock.acquire_nowait, lock)
        end)
      end)
      lock:release()
    end)
  end)

  it("refuses to acquire a lock its task already holds", function()
    loom.run(function()
      for _, fast in ipairs({ false, true }) do
        local lock = loom.lock({ fast_acquire = fast })
        lock:acquire()
        fails_with("Attempted to acquire an already held Lock",
          lock.acquire, lock)
        fails_with("Attempted to acquire an already held Lock",
          lock.acquire_nowait, lock)
        lock:release()
      end
    end)
  end)

  it("refuses a release by a task that does not hold it", function()
    loom.run(function()
      local lock = loom.lock()
      fails_with("The current task is not holding this lock",
        lock.release, lock)
      loom.task_group(function(tg)
        local _ <close> = lock:acquire()
        tg:start_soon(function()
          fails_with("The current task is not holding this lock",
            lock.release, lock)
        end)
      end)
    end)
    fails_with("The current task is not holding this lock",
      loom.lock().release, loom.lock())
  end)

  it("raises when a guard is released twice (the guard is the lock)",
    function()
      loom.run(function()
        local lock = loom.lock()
        local ok, err = pcall(function()
          local g <close> = lock:acquire()
          g:release()
        end)
        assert.is_false(ok)
        assert.matches("The current task is not holding this lock", err, 1,
          true)
        assert.is_false(lock:locked())
      end)
    end)

  for _, release_first in ipairs({ false, true }) do
    it("never hands the lock to a waiter cancelled meanwhile "
      .. "(test_cancel_during_acquire, release "
      .. (release_first and "first" or "last") .. ")", function()
      local acquired = false
      local lock = loom.lock()
      loom.run(function()
        loom.task_group(function(tg)
          lock:acquire()
          tg:start(function(task_status)
            task_status:started()
            local _ <close> = lock:acquire()
            acquired = true
          end)
          tg:cancel()
          loom.cancel_scope({ shield = true }):run(function()
            if release_first then
              lock:release()
              loom.wait_all_tasks_blocked()
            else
              loom.wait_all_tasks_blocked()
              lock:release()
            end
          end)
        end)
      end)
      assert.is_false(acquired)
      assert.is_false(lock:locked())
    end)
  end

  it("reports locked, owner and tasks_waiting (test_statistics)", function()
    local lock = loom.lock()
    loom.run(function()
      loom.task_group(function(tg)
        local st = lock:statistics()
        assert.is_false(st.locked)
        assert.is_nil(st.owner)
        assert.equal(0, st.tasks_waiting)
        do
          local _ <close> = lock:acquire()
          st = lock:statistics()
          assert.is_true(st.locked)
          assert.equal(loom.current_task(), st.owner)
          assert.equal(0, st.tasks_waiting)
          for i = 1, 2 do
            tg:start_soon(function() local _ <close> = lock:acquire() end)
            loom.wait_all_tasks_blocked()
            assert.equal(i, lock:statistics().tasks_waiting)
          end
        end
      end)
    end)
    local st = lock:statistics()
    assert.is_false(st.locked)
    assert.is_nil(st.owner)
    assert.equal(0, st.tasks_waiting)
  end)

  it("forgets a waiter cancelled just before a release "
    .. "(test_cancelled_after_acquire)", function()
    loom.run(function()
      local lock = loom.lock()
      lock:acquire_nowait()
      loom.task_group(function(tg)
        local task1 = tg:create_task(function() lock:acquire() end)
        loom.wait_all_tasks_blocked()
        task1:cancel()
        lock:release()
        assert.equal(0, lock:statistics().tasks_waiting)
        assert.is_false(lock:locked())
        loom.fail_after(3, function() lock:acquire() end)
      end)
      lock:release()
    end)
  end)

  it("hands the lock over on release (test_owner_after_release)", function()
    loom.run(function()
      local event = loom.event()
      local lock = loom.lock()
      loom.task_group(function(tg)
        local h1
        h1 = tg:start_soon(function()
          lock:acquire()
          assert.equal(h1, lock:statistics().owner)
          event:wait()
          lock:release()
          local owner = lock:statistics().owner
          assert.equal("task2", owner and owner.name)
        end)
        loom.wait_all_tasks_blocked()
        local h2 = tg:start_soon(function()
          local _ <close> = lock:acquire()
        end)
        h2.name = "task2"
        loom.wait_all_tasks_blocked()
        event:set()
      end)
    end)
  end)

  it("keeps a lock granted before the cancellation arrives", function()
    loom.run(function()
      local lock = loom.lock()
      local log = {}
      loom.task_group(function(tg)
        lock:acquire()
        local h = tg:start_soon(function()
          local _ <close> = lock:acquire()
          log[#log + 1] = "acquired"
          local ok, err = pcall(loom.checkpoint)
          log[#log + 1] = ok and "no cancel" or (loom.is_cancelled(err)
            and "cancelled" or tostring(err))
        end)
        loom.wait_all_tasks_blocked()
        lock:release()            -- hands the lock to h
        h:cancel()                -- arrives after the hand-off
        assert.equal(h, lock:statistics().owner)
      end)
      assert.same({ "acquired", "cancelled" }, log)
      assert.is_false(lock:locked())
    end)
  end)

  it("raises Cancelled before acquiring in a cancelled scope", function()
    loom.run(function()
      local lock = loom.lock()
      local scope = loom.cancel_scope()
      scope:run(function()
        scope:cancel()
        lock:acquire()
        error("not reached")
      end)
      assert.is_false(lock:locked())
    end)
  end)

  it("is FIFO-fair with direct hand-off (generic lock fifo fairness)",
    function()
      local record = {}
      loom.run(function()
        local lock = loom.lock()
        loom.task_group(function(tg)
          for name = 1, 3 do
            tg:start_soon(function()
              for _ = 1, 5 do
                local _ <close> = lock:acquire()
                record[#record + 1] = name
              end
            end)
          end
        end)
      end)
      assert.same({ 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3 }, record)
    end)

  it("queues a releasing task behind waiters (no barging)", function()
    loom.run(function()
      local lock = loom.lock()
      local order = {}
      loom.task_group(function(tg)
        lock:acquire()
        tg:start_soon(function()
          local _ <close> = lock:acquire()
          order[#order + 1] = "waiter"
        end)
        loom.wait_all_tasks_blocked()
        lock:release()
        raises(loom.WouldBlock, lock.acquire_nowait, lock)
        local _ <close> = lock:acquire()
        order[#order + 1] = "releaser"
      end)
      assert.same({ "waiter", "releaser" }, order)
    end)
  end)

  it("keeps one task at a time in the critical section "
    .. "(generic lock exclusion)", function()
    local inside, acquires = false, 0
    loom.run(function()
      local lock = loom.lock()
      loom.task_group(function(tg)
        for _ = 1, 5 do
          tg:start_soon(function()
            for _ = 1, 10 do
              local _ <close> = lock:acquire()
              acquires = acquires + 1
              assert.is_false(inside)
              inside = true
              loom.checkpoint()
              loom.checkpoint()
              inside = false
            end
          end)
        end
      end)
    end)
    assert.equal(50, acquires)
  end)

  it("lets acquire_nowait block later acquirers "
    .. "(generic lock acquire_nowait blocks acquire)", function()
    local record = {}
    loom.run(function()
      local lock = loom.lock()
      loom.task_group(function(tg)
        lock:acquire_nowait()
        tg:start_soon(function()
          record[#record + 1] = "started"
          do local _ <close> = lock:acquire() end
          record[#record + 1] = "finished"
        end)
        loom.wait_all_tasks_blocked()
        assert.same({ "started" }, record)
        lock:release()
      end)
    end)
    assert.same({ "started", "finished" }, record)
  end)

  it("stays locked when its owner ends without releasing (AnyIO)", function()
    loom.run(function()
      local lock = loom.lock()
      local h
      loom.task_group(function(tg)
        h = tg:start_soon(function() lock:acquire() end)
      end)
      assert.is_true(lock:locked())
      assert.equal(h, lock:statistics().owner)
      raises(loom.WouldBlock, lock.acquire_nowait, lock)
    end)
  end)

  it("checks its arguments and prints its state", function()
    -- (called through pcall, the function's name is looked up in
    -- package.loaded: "loom.lock" or "loom.core.lock")
    fails_with("(table expected, got number)", loom.lock, 1)
    fails_with("fast_acquire must be a boolean, got string", loom.lock,
      { fast_acquire = "yes" })
    local lock = loom.lock()
    fails_with("loom.Lock expected, got table", lock.locked, {})
    assert.matches("^loom%.Lock: 0x%x+ %(unlocked%)$", tostring(lock))
    loom.run(function()
      lock:acquire()
      assert.matches("%(locked by task %d+, 0 waiting%)$", tostring(lock))
      lock:release()
    end)
    local ok, err = pcall(lock.acquire, lock)
    assert.is_false(ok)
    assert.matches("loom.Lock:acquire: must be called from inside a loom task",
      err, 1, true)
  end)
end)
