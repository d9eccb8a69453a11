-- loom.semaphore(): ported from AnyIO tests/test_synchronization.py
-- (TestSemaphore) and Trio _tests/test_sync.py (test_Semaphore,
-- test_Semaphore_bounded, the generic lock tests with Semaphore(1)).
local loom = require("loom")

local H = require("helpers")
local raises, fails_with = H.raises, H.fails_with

describe("loom.semaphore", function()
  it("limits holders through <close> guards (test_contextmanager)",
    function()
      local semaphore = loom.semaphore(2)
      loom.run(function()
        loom.task_group(function(tg)
          for _ = 1, 2 do
            tg:start_soon(function()
              local g <close> = semaphore:acquire()
              assert.equal(semaphore, g)
              assert.is_true(semaphore.value == 0 or semaphore.value == 1)
            end)
          end
        end)
      end)
      assert.equal(2, semaphore.value)
    end)

  it("can be acquired and released by hand (test_manual_acquire)", function()
    local semaphore = loom.semaphore(2)
    loom.run(function()
      loom.task_group(function(tg)
        for _ = 1, 2 do
          tg:start_soon(function()
            semaphore:acquire()
            assert.is_true(semaphore.value == 0 or semaphore.value == 1)
            semaphore:release()
          end)
        end
      end)
    end)
    assert.equal(2, semaphore.value)
  end)

  it("yields on an uncontended acquire unless fast_acquire is set",
    function()
      loom.run(function()
        for _, fast in ipairs({ false, true }) do
          local semaphore = loom.semaphore(1, nil, { fast_acquire = fast })
          local other_ran = false
          loom.task_group(function(tg)
            tg:start_soon(function() other_ran = true end)
            local _ <close> = semaphore:acquire()
            assert.equal(not fast, other_ran)
          end)
        end
      end)
    end)

  it("acquire_nowait decrements, then raises WouldBlock at zero", function()
    local semaphore = loom.semaphore(1)
    assert.equal(semaphore, semaphore:acquire_nowait())
    assert.equal(0, semaphore.value)
    raises(loom.WouldBlock, semaphore.acquire_nowait, semaphore)
  end)

  for _, release_first in ipairs({ false, true }) do
    it("never gives a slot to a waiter cancelled meanwhile "
      .. "(test_cancel_during_acquire, release "
      .. (release_first and "first" or "last") .. ")", function()
      local acquired = false
      local semaphore = loom.semaphore(1)
      loom.run(function()
        loom.task_group(function(tg)
          semaphore:acquire()
          tg:start(function(task_status)
            task_status:started()
            local _ <close> = semaphore:acquire()
            acquired = true
          end)
          tg:cancel()
          loom.cancel_scope({ shield = true }):run(function()
            if release_first then
              semaphore:release()
              loom.wait_all_tasks_blocked()
            else
              loom.wait_all_tasks_blocked()
              semaphore:release()
            end
          end)
        end)
      end)
      assert.is_false(acquired)
      assert.equal(1, semaphore.value)
    end)
  end

  it("exposes max_value (test_max_value)", function()
    assert.equal(2, loom.semaphore(0, 2).max_value)
    assert.is_nil(loom.semaphore(0).max_value)
  end)

  it("refuses a release past max_value (test_max_value_exceeded)",
    function()
      local semaphore = loom.semaphore(1, 2)
      semaphore:release()
      fails_with("semaphore released too many times", semaphore.release,
        semaphore)
      assert.equal(2, semaphore.value)
      local bs = loom.semaphore(1, 1)
      fails_with("semaphore released too many times", bs.release, bs)
      bs:acquire_nowait()
      bs:release()
      assert.equal(1, bs.value)
    end)

  it("grows without bound when max_value is nil (Trio test_Semaphore)",
    function()
      local s = loom.semaphore(1)
      s:release()
      assert.equal(2, s.value)
    end)

  it("counts waiters in statistics (test_statistics)", function()
    local semaphore = loom.semaphore(1)
    loom.run(function()
      loom.task_group(function(tg)
        assert.equal(0, semaphore:statistics().tasks_waiting)
        do
          local _ <close> = semaphore:acquire()
          assert.equal(0, semaphore:statistics().tasks_waiting)
          for i = 1, 2 do
            tg:start_soon(function()
              local _ <close> = semaphore:acquire()
            end)
            loom.wait_all_tasks_blocked()
            assert.equal(i, semaphore:statistics().tasks_waiting)
          end
        end
      end)
    end)
    assert.equal(0, semaphore:statistics().tasks_waiting)
  end)

  it("reserves a released slot for the woken waiter (test_acquire_race)",
    function()
      loom.run(function()
        local semaphore = loom.semaphore(1)
        loom.task_group(function(tg)
          semaphore:acquire_nowait()
          tg:start_soon(function() semaphore:acquire() end)
          loom.wait_all_tasks_blocked()
          semaphore:release()
          assert.equal(0, semaphore.value)
          raises(loom.WouldBlock, semaphore.acquire_nowait, semaphore)
        end)
      end)
    end)

  it("forgets a waiter cancelled just before a release "
    .. "(test_cancelled_after_acquire)", function()
    loom.run(function()
      local semaphore = loom.semaphore(1, 1)
      semaphore:acquire_nowait()
      loom.task_group(function(tg)
        local task1 = tg:create_task(function() semaphore:acquire() end)
        loom.wait_all_tasks_blocked()
        task1:cancel()
        semaphore:release()
        assert.equal(0, semaphore:statistics().tasks_waiting)
        assert.equal(1, semaphore.value)
        loom.fail_after(3, function() semaphore:acquire() end)
      end)
    end)
  end)

  it("keeps a slot granted before the cancellation arrives", function()
    loom.run(function()
      local semaphore = loom.semaphore(0, 1)
      local got = false
      loom.task_group(function(tg)
        local h = tg:start_soon(function()
          semaphore:acquire()
          got = true
        end)
        loom.wait_all_tasks_blocked()
        semaphore:release()
        h:cancel()
        assert.equal(0, semaphore.value)
      end)
      assert.is_true(got)
      assert.equal(0, semaphore.value)
    end)
  end)

  it("is FIFO-fair with Semaphore(1) (generic lock fifo fairness)",
    function()
      local record = {}
      loom.run(function()
        local s = loom.semaphore(1)
        loom.task_group(function(tg)
          for name = 1, 3 do
            tg:start_soon(function()
              for _ = 1, 5 do
                local _ <close> = s:acquire()
                record[#record + 1] = name
              end
            end)
          end
        end)
      end)
      assert.same({ 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3 }, record)
    end)

  it("follows Trio's test_Semaphore sequence", function()
    loom.run(function()
      local s = loom.semaphore(1)
      assert.is_nil(s.max_value)
      s:release()
      assert.equal(2, s.value)
      assert.equal(0, s:statistics().tasks_waiting)
      s:acquire_nowait()
      assert.equal(1, s.value)
      s:acquire()
      assert.equal(0, s.value)
      raises(loom.WouldBlock, s.acquire_nowait, s)
      s:release()
      assert.equal(1, s.value)
      do
        local _ <close> = s:acquire()
        assert.equal(0, s.value)
      end
      assert.equal(1, s.value)
      s:acquire_nowait()
      local record = {}
      loom.task_group(function(tg)
        tg:start_soon(function()
          record[#record + 1] = "started"
          s:acquire()
          record[#record + 1] = "finished"
        end)
        loom.wait_all_tasks_blocked()
        assert.same({ "started" }, record)
        assert.equal(0, s.value)
        s:release()
        assert.equal(0, s.value)
        raises(loom.WouldBlock, s.acquire_nowait, s)
      end)
      assert.same({ "started", "finished" }, record)
    end)
  end)

  it("raises Cancelled before acquiring in a cancelled scope", function()
    loom.run(function()
      local s = loom.semaphore(1)
      local scope = loom.cancel_scope()
      scope:run(function()
        scope:cancel()
        s:acquire()
        error("not reached")
      end)
      assert.equal(1, s.value)
    end)
  end)

  it("rejects bad initial and maximum values with AnyIO's words", function()
    fails_with("initial_value must be an integer", loom.semaphore, 1.5)
    fails_with("initial_value must be an integer", loom.semaphore, "1")
    fails_with("initial_value must be an integer", loom.semaphore)
    fails_with("initial_value must be >= 0", loom.semaphore, -1)
    fails_with("max_value must be an integer or nil", loom.semaphore, 1, 1.5)
    fails_with("max_value must be equal to or higher than initial_value",
      loom.semaphore, 2, 1)
    fails_with("fast_acquire must be a boolean", loom.semaphore, 1, nil,
      { fast_acquire = 1 })
    assert.equal(3, loom.semaphore(3.0).value)
  end)

  it("keeps value and max_value read-only and prints its state", function()
    local s = loom.semaphore(1, 3)
    fails_with("cannot set field 'value'", function() s.value = 5 end)
    assert.equal(1, s.value)
    fails_with("loom.Semaphore has no method or field 'nonexistent'",
      function() return s.nonexistent end)
    assert.is_nil(loom.semaphore(1).max_value)
    assert.matches("^loom%.Semaphore: 0x%x+ %(value 1 of 3, 0 waiting%)$",
      tostring(s))
    assert.matches("%(value 0, 0 waiting%)$", tostring(loom.semaphore(0)))
    fails_with("loom.Semaphore expected, got loom.Event", s.release,
      loom.event())
  end)
end)
