-- loom.capacity_limiter(): ported from AnyIO tests/test_synchronization.py
-- (TestCapacityLimiter) and Trio _tests/test_sync.py (test_CapacityLimiter*,
-- the generic lock tests with CapacityLimiter(1)).
local loom = require("loom")

local H = require("helpers")
local raises, fails_with = H.raises, H.fails_with

local HOLDING =
  "this borrower is already holding one of this CapacityLimiter's tokens"
local NOT_HOLDING =
  "this borrower isn't holding any of this CapacityLimiter's tokens"

-- statistics().borrowers as a sorted list of strings, for comparisons.
local function borrowers(limiter)
  local out = {}
  for i, b in ipairs(limiter:statistics().borrowers) do out[i] = tostring(b) end
  table.sort(out)
  return out
end

describe("loom.capacity_limiter", function()
  it("rejects bad token counts with AnyIO's words", function()
    fails_with("total_tokens must be an int or math.inf",
      loom.capacity_limiter, 1.5)
    fails_with("total_tokens must be an int or math.inf",
      loom.capacity_limiter, "2")
    fails_with("total_tokens must be an int or math.inf",
      loom.capacity_limiter, 0 / 0)
    fails_with("total_tokens must be >= 0", loom.capacity_limiter, -1)
    fails_with("total_tokens must be >= 0", loom.capacity_limiter,
      -math.huge)
    assert.equal(0, loom.capacity_limiter(0).total_tokens)
    assert.equal(math.huge, loom.capacity_limiter(math.huge).total_tokens)
    assert.equal(2, math.tointeger(loom.capacity_limiter(2.0).total_tokens))
  end)

  it("lends tokens through <close> guards (test_borrow)", function()
    loom.run(function()
      local limiter = loom.capacity_limiter(2)
      assert.equal(2, limiter.total_tokens)
      assert.equal(2, limiter.available_tokens)
      assert.equal(0, limiter.borrowed_tokens)
      do
        local g <close> = limiter:acquire()
        assert.equal(limiter, g)
        assert.equal(2, limiter.total_tokens)
        assert.equal(1, limiter.available_tokens)
        assert.equal(1, limiter.borrowed_tokens)
      end
      assert.equal(0, limiter.borrowed_tokens)
    end)
  end)

  it("keeps one borrower at a time in with one token (test_limit)",
    function()
      loom.run(function()
        local value = 0
        local limiter = loom.capacity_limiter(1)
        loom.task_group(function(tg)
          for _ = 1, 3 do
            tg:start_soon(function()
              for _ = 1, 5 do
                local _ <close> = limiter:acquire()
                assert.equal(0, value)
                value = 1
                loom.wait_all_tasks_blocked()
                value = 0
              end
            end)
          end
        end)
      end)
    end)

  it("lends a borrower one token at most (test_borrow_twice)", function()
    loom.run(function()
      local limiter = loom.capacity_limiter(1)
      limiter:acquire()
      fails_with(HOLDING, limiter.acquire, limiter)
      fails_with(HOLDING, limiter.acquire_nowait, limiter)
      assert.equal(1, limiter.borrowed_tokens)
      limiter:release()
    end)
  end)

  it("refuses a release by a non-borrower (test_bad_release)", function()
    loom.run(function()
      local limiter = loom.capacity_limiter(1)
      fails_with(NOT_HOLDING, limiter.release, limiter)
      fails_with(NOT_HOLDING, limiter.release_on_behalf_of, limiter, "x")
    end)
    local limiter = loom.capacity_limiter(1)
    fails_with(NOT_HOLDING, limiter.release, limiter)
  end)

  it("raises when a guard is released twice (the guard is the limiter)",
    function()
      loom.run(function()
        local limiter = loom.capacity_limiter(1)
        local ok, err = pcall(function()
          local g <close> = limiter:acquire()
          g:release()
        end)
        assert.is_false(ok)
        assert.matches(NOT_HOLDING, err, 1, true)
        assert.equal(0, limiter.borrowed_tokens)
      end)
    end)

  it("wakes waiters when total_tokens grows (test_increase_tokens)",
    function()
      local event2
      loom.run(function()
        local limiter = loom.capacity_limiter(1)
        local event1 = loom.event()
        event2 = loom.event()
        loom.task_group(function(tg)
          tg:start_soon(function()
            event1:wait()
            local _ <close> = limiter:acquire()
            event2:set()
          end)
          tg:start_soon(function()
            local _ <close> = limiter:acquire()
            event1:set()
            event2:wait()
          end)
          loom.wait_all_tasks_blocked()
          assert.is_true(event1:is_set())
          assert.is_false(event2:is_set())
          limiter.total_tokens = 2
        end)
      end)
      assert.is_true(event2:is_set())
    end)

  it("lets new acquirers in after total_tokens grows "
    .. "(test_increase_tokens_lets_others_acquire)", function()
    loom.run(function()
      local limiter = loom.capacity_limiter(1)
      local entered = { loom.event(), loom.event(), loom.event() }
      local continue = loom.event()
      local function worker(ev)
        local _ <close> = limiter:acquire()
        ev:set()
        continue:wait()
      end
      loom.task_group(function(tg)
        tg:start_soon(worker, entered[1])
        tg:start_soon(worker, entered[2])
        loom.wait_all_tasks_blocked()
        local n = 0
        for _, ev in ipairs(entered) do if ev:is_set() then n = n + 1 end end
        assert.equal(1, n)
        limiter.total_tokens = 3
        tg:start_soon(worker, entered[3])
        loom.fail_after(1, function()
          entered[2]:wait()
          entered[3]:wait()
        end)
        continue:set()
      end)
    end)
  end)

  it("reports tokens, borrowers and waiters (test_statistics)", function()
    loom.run(function()
      local limiter = loom.capacity_limiter(1)
      local st = limiter:statistics()
      assert.equal(1, st.total_tokens)
      assert.equal(0, st.borrowed_tokens)
      assert.equal(0, st.tasks_waiting)
      assert.same({}, st.borrowers)
      loom.task_group(function(tg)
        local _ <close> = limiter:acquire()
        st = limiter:statistics()
        assert.equal(1, st.borrowed_tokens)
        assert.equal(0, st.available_tokens)
        assert.same({ loom.current_task() }, st.borrowers)
        assert.equal(0, st.tasks_waiting)
        for i = 1, 2 do
          tg:start_soon(function() local _ <close> = limiter:acquire() end)
          loom.wait_all_tasks_blocked()
          assert.equal(i, limiter:statistics().tasks_waiting)
        end
      end)
      assert.equal(0, limiter:statistics().tasks_waiting)
      assert.equal(0, limiter:statistics().borrowed_tokens)
    end)
  end)

  it("serves waiters in order (test_ordered_queue)", function()
    local results = {}
    loom.run(function()
      local limiter = loom.capacity_limiter(1)
      local event = loom.event()
      loom.task_group(function(tg)
        for i = 0, 2 do
          tg:start(function(task_status, x)
            task_status:started()
            local _ <close> = limiter:acquire()
            event:wait()
            results[#results + 1] = x
          end, i)
        end
        event:set()
      end)
    end)
    assert.same({ 0, 1, 2 }, results)
  end)

  it("passes a token on past a cancelled waiter (test_acquire_cancelled)",
    function()
      loom.run(function()
        local limiter = loom.capacity_limiter(1)
        local function borrower(task_status, event)
          local scope = loom.cancel_scope()
          scope:run(function()
            task_status:started(scope)
            local _ <close> = limiter:acquire()
            event:set()
            loom.checkpoint()
          end)
        end
        local got_second = false
        loom.task_group(function(tg)
          local event1, event2 = loom.event(), loom.event()
          local scope1
          do
            local _ <close> = limiter:acquire()
            scope1 = tg:start(borrower, event1)
            tg:start(borrower, event2)
            scope1:cancel()
          end
          loom.move_on_after(1, function()
            event2:wait()
            got_second = true
          end)
          tg:cancel()
        end)
        assert.is_true(got_second)
      end)
    end)

  it("raises WouldBlock from the nowait forms (test_acquire_nowait)",
    function()
      loom.run(function()
        local limiter = loom.capacity_limiter(1)
        limiter:acquire_nowait()
        local ok, eg = pcall(loom.task_group, function(tg)
          tg:start_soon(function() limiter:acquire_nowait() end)
        end)
        assert.is_false(ok)
        assert.is_true(loom.is(eg, loom.ErrorGroup))
        assert.is_true(loom.is(eg.errors[1], loom.WouldBlock))
        local l2 = loom.capacity_limiter(1)
        l2:acquire_on_behalf_of_nowait("b1")
        raises(loom.WouldBlock, l2.acquire_on_behalf_of_nowait, l2, "b2")
        limiter:release()
      end)
    end)

  it("reserves a freed token for the waiter (AnyIO #1170, Trio fairness)",
    function()
      loom.run(function()
        local limiter = loom.capacity_limiter(1)
        limiter:acquire_on_behalf_of_nowait("A")
        loom.task_group(function(tg)
          tg:start_soon(function() limiter:acquire_on_behalf_of("B") end)
          loom.wait_all_tasks_blocked()
          assert.equal(1, limiter:statistics().tasks_waiting)
          limiter:release_on_behalf_of("A")
          raises(loom.WouldBlock, limiter.acquire_on_behalf_of_nowait,
            limiter, "X")
        end)
        assert.is_true(limiter.borrowed_tokens <= limiter.total_tokens)
        assert.same({ "B" }, limiter:statistics().borrowers)
        limiter:release_on_behalf_of("B")
      end)
    end)

  it("follows Trio's test_CapacityLimiter sequence", function()
    loom.run(function()
      local c = loom.capacity_limiter(2)
      assert.equal(2, c.total_tokens)
      assert.equal(0, c.borrowed_tokens)
      assert.equal(2, c.available_tokens)
      fails_with(NOT_HOLDING, c.release, c)
      c:acquire_nowait()
      assert.equal(1, c.borrowed_tokens)
      assert.equal(1, c.available_tokens)
      local st = c:statistics()
      assert.same({ loom.current_task() }, st.borrowers)
      fails_with(HOLDING, c.acquire_nowait, c)
      fails_with(HOLDING, c.acquire, c)
      assert.equal(1, c.borrowed_tokens)
      assert.is_nil(c:acquire_on_behalf_of("someone"))
      assert.equal(2, c.borrowed_tokens)
      raises(loom.WouldBlock, c.acquire_on_behalf_of_nowait, c, "third")
      -- borrowers come in acquisition order
      assert.same({ loom.current_task(), "someone" }, c:statistics().borrowers)
      c:release_on_behalf_of(loom.current_task())
      assert.same({ "someone" }, c:statistics().borrowers)
      c:release_on_behalf_of("someone")
      assert.equal(0, c.borrowed_tokens)
      loom.task_group(function(tg)
        c:acquire_on_behalf_of("value 1")
        c:acquire_on_behalf_of("value 2")
        tg:start_soon(function() c:acquire_on_behalf_of("value 3") end)
        loom.wait_all_tasks_blocked()
        assert.equal(2, c.borrowed_tokens)
        assert.equal(1, c:statistics().tasks_waiting)
        c:release_on_behalf_of("value 2")
        assert.equal(2, c.borrowed_tokens)
        raises(loom.WouldBlock, c.acquire_nowait, c)
      end)
      c:release_on_behalf_of("value 3")
      c:release_on_behalf_of("value 1")
    end)
  end)

  it("lends without limit with math.huge (test_CapacityLimiter_inf)",
    function()
      loom.run(function()
        local c = loom.capacity_limiter(math.huge)
        assert.equal(math.huge, c.total_tokens)
        assert.equal(math.huge, c.available_tokens)
        c:acquire_nowait()
        assert.equal(1, c.borrowed_tokens)
        assert.equal(math.huge, c.available_tokens)
        assert.equal(math.huge, c:statistics().total_tokens)
      end)
    end)

  it("follows total_tokens changes (test_CapacityLimiter_change_total_tokens)",
    function()
      loom.run(function()
        local c = loom.capacity_limiter(2)
        fails_with("total_tokens must be an int or math.inf",
          function() c.total_tokens = 1.5 end)
        fails_with("total_tokens must be an int or math.inf",
          function() c.total_tokens = "3" end)
        fails_with("total_tokens must be >= 0",
          function() c.total_tokens = -1 end)
        fails_with("cannot set field 'borrowed_tokens'",
          function() c.borrowed_tokens = 1 end)
        assert.equal(2, c.total_tokens)
        loom.task_group(function(tg)
          for i = 0, 4 do
            tg:start_soon(function() c:acquire_on_behalf_of(i) end)
            loom.wait_all_tasks_blocked()
          end
          assert.same({ "0", "1" }, borrowers(c))
          assert.equal(3, c:statistics().tasks_waiting)
          c.total_tokens = c.total_tokens + 2
          assert.same({ "0", "1", "2", "3" }, borrowers(c))
          assert.equal(1, c:statistics().tasks_waiting)
          c.total_tokens = c.total_tokens - 3
          assert.equal(4, c.borrowed_tokens)
          assert.equal(1, c.total_tokens)
          assert.equal(-3, c.available_tokens)
          c:release_on_behalf_of(0)
          c:release_on_behalf_of(1)
          c:release_on_behalf_of(2)
          assert.same({ "3" }, borrowers(c))
          assert.equal(1, c:statistics().tasks_waiting)
          c:release_on_behalf_of(3)
          assert.same({ "4" }, borrowers(c))
          assert.equal(0, c:statistics().tasks_waiting)
          c:release_on_behalf_of(4)
        end)
      end)
    end)

  it("forgets cancelled waiters (test_CapacityLimiter_memleak_548)",
    function()
      loom.run(function()
        local limiter = loom.capacity_limiter(1)
        limiter:acquire()
        loom.task_group(function(tg)
          tg:start_soon(function() limiter:acquire() end)
          loom.wait_all_tasks_blocked()
          assert.equal(1, limiter:statistics().tasks_waiting)
          tg:cancel()
        end)
        assert.equal(0, limiter:statistics().tasks_waiting)
        limiter:release()
        assert.equal(0, limiter.borrowed_tokens)
      end)
    end)

  it("lets nothing through with zero tokens "
    .. "(test_CapacityLimiter_zero_limit_tokens)", function()
    loom.run(function()
      local c = loom.capacity_limiter(5)
      loom.task_group(function(tg)
        c.total_tokens = 0
        for i = 0, 4 do
          tg:start_soon(function() c:acquire_on_behalf_of(i) end)
          loom.wait_all_tasks_blocked()
        end
        assert.same({}, borrowers(c))
        assert.equal(5, c:statistics().tasks_waiting)
        c.total_tokens = 5
        assert.same({ "0", "1", "2", "3", "4" }, borrowers(c))
        tg:start_soon(function() c:acquire_on_behalf_of(5) end)
        loom.wait_all_tasks_blocked()
        assert.equal(1, c:statistics().tasks_waiting)
        for i = 0, 4 do c:release_on_behalf_of(i) end
        assert.equal(0, c:statistics().tasks_waiting)
        c:release_on_behalf_of(5)

        c.total_tokens = 0
        raises(loom.WouldBlock, c.acquire_nowait, c)
        tg:start_soon(function() c:acquire_on_behalf_of(6) end)
        loom.wait_all_tasks_blocked()
        assert.equal(1, c:statistics().tasks_waiting)
        assert.same({}, borrowers(c))
        c.total_tokens = 1
        assert.equal(0, c:statistics().tasks_waiting)
        assert.same({ "6" }, borrowers(c))
        c:release_on_behalf_of(6)

        c:acquire_on_behalf_of(0)
        tg:start_soon(function() c:acquire_on_behalf_of(1) end)
        loom.wait_all_tasks_blocked()
        c.total_tokens = 0
        assert.same({ "0" }, borrowers(c))
        c:release_on_behalf_of(0)
        loom.wait_all_tasks_blocked()
        assert.same({}, borrowers(c))
        assert.equal(1, c:statistics().tasks_waiting)
        c.total_tokens = 1
        loom.wait_all_tasks_blocked()
        assert.same({ "1" }, borrowers(c))
        assert.equal(0, c:statistics().tasks_waiting)
        c:release_on_behalf_of(1)
        c.total_tokens = 0
        tg:cancel()
      end)
      assert.equal(0, c.total_tokens)
      assert.same({}, borrowers(c))
    end)
  end)

  it("is FIFO-fair with one token (generic lock fifo fairness)", function()
    local record = {}
    loom.run(function()
      local c = loom.capacity_limiter(1)
      loom.task_group(function(tg)
        for name = 1, 3 do
          tg:start_soon(function()
            for _ = 1, 5 do
              local _ <close> = c:acquire()
              record[#record + 1] = name
            end
          end)
        end
      end)
    end)
    assert.same({ 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3 }, record)
  end)

  it("keeps a token granted before the cancellation arrives",
    function()
      loom.run(function()
        local c = loom.capacity_limiter(1)
        local h
        loom.task_group(function(tg)
          c:acquire_on_behalf_of("first")
          h = tg:start_soon(function() c:acquire_on_behalf_of("second") end)
          loom.wait_all_tasks_blocked()
          c:release_on_behalf_of("first")
          h:cancel()
        end)
        assert.equal("finished", h:status())
        assert.same({ "second" }, c:statistics().borrowers)
      end)
    end)

  it("refuses a borrower that waits twice and got a token meanwhile",
    function()
      loom.run(function()
        local c = loom.capacity_limiter(1)
        c:acquire_on_behalf_of("owner")
        local errors = {}
        loom.task_group(function(tg)
          for i = 1, 2 do
            tg:start_soon(function()
              local ok, err = pcall(c.acquire_on_behalf_of, c, "same")
              errors[i] = ok and "ok" or tostring(err)
            end)
          end
          loom.wait_all_tasks_blocked()
          c.total_tokens = 3
        end)
        assert.equal("ok", errors[1])
        assert.matches(HOLDING, errors[2], 1, true)
        assert.equal(2, c.borrowed_tokens)
      end)
    end)

  it("checks borrowers and prints its state", function()
    local c = loom.capacity_limiter(3)
    fails_with("borrower must not be nil", c.acquire_on_behalf_of_nowait, c,
      nil)
    fails_with("borrower must not be NaN", c.acquire_on_behalf_of_nowait, c,
      0 / 0)
    fails_with("loom.CapacityLimiter expected, got loom.Event", c.release,
      loom.event())
    c:acquire_on_behalf_of_nowait("x")
    assert.matches("^loom%.CapacityLimiter: 0x%x+ %(1 of 3 tokens borrowed, "
      .. "0 waiting%)$", tostring(c))
    fails_with("loom.CapacityLimiter has no method or field 'unknown_field'",
      function() return c.unknown_field end)
    fails_with("loom.CapacityLimiter has no field 'total_token' (did you "
      .. "mean 'total_tokens'?)", function() return c.total_token end)
    local ok, err = pcall(c.acquire, c)
    assert.is_false(ok)
    assert.matches("loom.CapacityLimiter:acquire: must be called from inside "
      .. "a loom task", err, 1, true)
  end)

  it("runs examples/crawler.lua", function()
    local lines = {}
    local env = setmetatable({
      print = function(...) lines[#lines + 1] = table.concat({ ... }, "\t") end,
    }, { __index = _G })
    assert(loadfile("examples/crawler.lua", "t", env))()
    assert.equal(15, #lines)
    assert.equal("/missing             depth 3  404 /missing", lines[13])
    assert.equal("13 pages, at most 3 fetches at once (limit 3), 0 tokens "
      .. "still borrowed", lines[14])
    assert.equal("took at least 5 rounds: true", lines[15])
  end)
end)
