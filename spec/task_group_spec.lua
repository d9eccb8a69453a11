-- Task groups: spawning order, joining, failure and cancellation semantics
-- (docs/api.md "Task groups"). Ports of
-- AnyIO tests/test_taskgroups.py and Trio test_run.py nursery tests.
-- Task handles, tg:start and gather have specs of their own.

local loom = require("loom")
local H = require("helpers")

local run, log = H.run, H.log

local NOT_ACTIVE =
  "This task group is not active; no new tasks can be started."

-- Sleep, then raise `text` whatever happened (AnyIO async_error).
local function async_error(text, delay)
  pcall(loom.sleep, delay or 0.01)
  error(text, 0)
end

-- Run fn in a group body and return the ErrorGroup it raises.
local function group_error(body)
  local err = H.capture_error(loom.task_group, body)
  assert.is_true(loom.is(err, loom.ErrorGroup), "not an ErrorGroup: "
    .. tostring(err))
  return err
end

describe("loom.task_group", function()
  it("returns the body's results once the children are done", function()
    run(function()
      local done = false
      local r = table.pack(loom.task_group(function(tg)
        tg:start_soon(function() loom.sleep(0.01); done = true end)
        return 1, nil, "three"
      end))
      assert.is_true(done)
      assert.same({ n = 3, 1, nil, "three" }, r)
    end)
  end)

  it("passes the group to the body and runs it in the calling task",
    function()
      run(function()
        local me = loom.current_task()
        loom.task_group(function(tg)
          assert.equal(me, loom.current_task())
          assert.equal("userdata", type(tg))
          H.contains(tostring(tg), "loom.TaskGroup")
        end)
      end)
    end)

  it("runs every child (AnyIO test_success)", function()
    run(function()
      local results = {}
      loom.task_group(function(tg)
        tg:start_soon(function(v) results[v] = true end, "a")
        tg:start_soon(function(v) results[v] = true end, "b")
      end)
      assert.same({ a = true, b = true }, results)
    end)
  end)

  it("passes arguments to children, nils included", function()
    run(function()
      local got
      loom.task_group(function(tg)
        tg:start_soon(function(...) got = table.pack(...) end, 1, nil, 3, nil)
      end)
      assert.same({ n = 4, 1, nil, 3, nil }, got)
    end)
  end)

  it("accepts a callable table as a child", function()
    run(function()
      local seen
      local callable = setmetatable({}, { __call = function(_, v)
        seen = v
      end })
      loom.task_group(function(tg) tg:start_soon(callable, "v") end)
      assert.equal("v", seen)
    end)
  end)

  it("never runs a child inside start_soon", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() add("child") end)
        add("after start_soon")
        tg:create_task(function() add("task") end)
        add("after create_task")
      end)
    end)
    assert.same({ "after start_soon", "after create_task", "child", "task" },
      events)
  end)

  it("starts children FIFO on a later turn", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        for i = 1, 5 do
          tg:start_soon(function() add("c" .. i) end)
        end
        add("b1")
        loom.checkpoint()
        add("b2")
      end)
    end)
    assert.same({ "b1", "c1", "c2", "c3", "c4", "c5", "b2" }, events)
  end)

  it("waits for children when the body returns", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function() loom.sleep(0.02); add("slow child") end)
        tg:start_soon(function() add("fast child") end)
        add("body returns")
      end)
      add("group exited")
    end)
    assert.same({ "body returns", "fast child", "slow child",
      "group exited" }, events)
  end)

  it("accepts children spawned by a child while exiting (Trio "
    .. "test_nursery_closure)", function()
    local events, add = log()
    run(function()
      local saved
      loom.task_group(function(tg)
        saved = tg
        tg:start_soon(function()
          loom.sleep(0.01)
          tg:start_soon(function() add("grandchild") end)
          add("child")
        end)
      end)
      add("exited")
      local err = H.capture_error(saved.start_soon, saved, function() end)
      assert.equal(NOT_ACTIVE, H.message(err))
    end)
    assert.same({ "child", "grandchild", "exited" }, events)
  end)

  it("refuses start_soon and create_task after exit (AnyIO "
    .. "test_already_closed)", function()
    run(function()
      local saved
      loom.task_group(function(tg) saved = tg end)
      local ran = false
      local err = H.capture_error(function()
        saved:start_soon(function() ran = true end)
      end)
      assert.equal(NOT_ACTIVE, H.message(err))
      err = H.capture_error(function()
        saved:create_task(function() ran = true end)
      end)
      assert.equal(NOT_ACTIVE, H.message(err))
      loom.sleep(0.001)
      assert.is_false(ran)
    end)
  end)

  it("refuses start_soon after exiting with an error (AnyIO "
    .. "test_start_soon_after_error)", function()
    run(function()
      local saved
      local err = group_error(function(tg)
        saved = tg
        error("body failed", 0)
      end)
      assert.same({ "body failed" }, err.errors)
      err = H.capture_error(saved.start_soon, saved, loom.checkpoint)
      assert.equal(NOT_ACTIVE, H.message(err))
    end)
  end)

  it("an empty group's exit is exactly one schedule point", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          add("s1")
          loom.checkpoint()
          add("s2")
        end)
        loom.task_group(function() end)
        add("after empty group")
      end)
    end)
    assert.same({ "s1", "after empty group", "s2" }, events)
  end)

  it("an empty group's exit is not a cancel point (AnyIO "
    .. "test_cancel_before_entering_task_group)", function()
    run(function()
      local s = loom.cancel_scope()
      local reached = false
      s:run(function()
        s:cancel()
        loom.task_group(function() end)
        reached = true
      end)
      assert.is_true(reached)
      assert.is_false(s.cancelled_caught)
    end)
  end)

  it("an empty group in a cancelled scope still reports a body error "
    .. "(Trio test_trivial_yields)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        local err = group_error(function() error("key", 0) end)
        assert.same({ "key" }, err.errors)
      end)
    end)
  end)
end)

describe("task group failures", function()
  it("a failing child cancels the body (AnyIO "
    .. "test_failing_child_task_cancels_host)", function()
    run(function()
      local sleep_completed = false
      local err = group_error(function(tg)
        tg:start_soon(function()
          loom.wait_all_tasks_blocked()
          error("foo", 0)
        end)
        loom.sleep(0.5)
        sleep_completed = true
      end)
      assert.same({ "foo" }, err.errors)
      assert.is_false(sleep_completed)
    end)
  end)

  it("a failing child cancels its siblings (AnyIO "
    .. "test_exception_cancels_siblings)", function()
    run(function()
      local sleep_completed = false
      local err = group_error(function(tg)
        tg:start_soon(function()
          loom.sleep(1)
          sleep_completed = true
        end)
        loom.wait_all_tasks_blocked()
        tg:start_soon(function() error("foo", 0) end)
      end)
      assert.same({ "foo" }, err.errors)
      assert.is_false(sleep_completed)
    end)
  end)

  it("a failing body cancels the children (AnyIO "
    .. "test_failing_host_task_cancels_children)", function()
    run(function()
      local sleep_completed = false
      local err = group_error(function(tg)
        tg:start_soon(function()
          loom.sleep(1)
          sleep_completed = true
        end)
        loom.wait_all_tasks_blocked()
        error("foo", 0)
      end)
      assert.same({ "foo" }, err.errors)
      assert.is_false(sleep_completed)
    end)
  end)

  it("wraps even a single error (AnyIO test_host_exception)", function()
    run(function()
      local result
      local err = group_error(function(tg)
        tg:start_soon(function() loom.sleep(3); result = "a" end)
        error("dummy error", 0)
      end)
      assert.equal(1, #err.errors)
      assert.equal("dummy error", err.errors[1])
      assert.equal("unhandled errors in a task group", err.message)
      assert.is_nil(result)
    end)
  end)

  it("keeps error values as they were raised", function()
    run(function()
      local obj = { "mine" }
      local cls = loom.error_class("MyError")
      local err = group_error(function(tg)
        tg:start_soon(function() error(obj) end)
        tg:start_soon(function() error(cls("m")) end)
        tg:start_soon(function() error(17) end)
      end)
      assert.equal(3, #err.errors)
      assert.is_true(rawequal(obj, err.errors[1]))
      assert.is_true(loom.is(err.errors[2], cls))
      assert.equal(17, err.errors[3])
    end)
  end)

  it("records a child that raises nil", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(function() error(nil) end)
      end)
      assert.equal(1, err.errors.n or #err.errors)
    end)
  end)

  it("collects errors in the order they happened (Trio "
    .. "test_two_child_crashes)", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(function() error("first", 0) end)
        tg:start_soon(function() error("second", 0) end)
        tg:start_soon(function() error("third", 0) end)
      end)
      assert.same({ "first", "second", "third" }, err.errors)
    end)
  end)

  it("records the body's error when the body exits", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(function()
          pcall(loom.sleep_forever)
          error("cleanup", 0)
        end)
        loom.wait_all_tasks_blocked()
        error("body", 0)
      end)
      assert.same({ "body", "cleanup" }, err.errors)
    end)
  end)

  it("records a child error before a body error raised later", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(function() error("child", 0) end)
        local _, e = pcall(loom.sleep_forever)
        assert.is_true(loom.is_cancelled(e))
        error("body", 0)
      end)
      assert.same({ "child", "body" }, err.errors)
    end)
  end)

  it("collects child errors raised while handling cancellation ("
    .. "AnyIO test_exception_group_children)", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(async_error, "task1", 0.01)
        tg:start_soon(async_error, "task2", 0.015)
      end)
      assert.same({ "task1", "task2" }, err.errors)
    end)
  end)

  it("collects the body's and a child's error (AnyIO "
    .. "test_exception_group_host)", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(async_error, "child", 2)
        loom.wait_all_tasks_blocked()
        error("host", 0)
      end)
      assert.same({ "host", "child" }, err.errors)
    end)
  end)

  it("never records cancellations", function()
    run(function()
      local cancelled = 0
      local err = group_error(function(tg)
        for _ = 1, 3 do
          tg:start_soon(function()
            local _, e = pcall(loom.sleep_forever)
            if loom.is_cancelled(e) then cancelled = cancelled + 1 end
            error(e, 0)
          end)
        end
        loom.wait_all_tasks_blocked()
        tg:start_soon(function() error("crash", 0) end)
        loom.sleep_forever()
      end)
      assert.same({ "crash" }, err.errors)
      assert.equal(3, cancelled)
    end)
  end)

  it("cancels looping siblings (Trio test_task_crash_propagation)",
    function()
      local record = {}
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            local _, e = pcall(function()
              while true do loom.checkpoint() end
            end)
            if loom.is_cancelled(e) then record[#record + 1] = "cancelled" end
          end)
          tg:start_soon(function() error("argh", 0) end)
        end)
      end)
      assert.is_true(loom.is(err, loom.ErrorGroup))
      assert.same({ "argh" }, err.errors)
      assert.same({ "cancelled" }, record)
    end)

  it("nests groups without flattening (AnyIO "
    .. "test_exception_group_filtering)", function()
    run(function()
      local err = group_error(function(tg)
        tg:start_soon(async_error, "parent task failed", 0.01)
        loom.task_group(function(tg2)
          tg2:start_soon(async_error, "child task failed", 0.01)
          loom.sleep(1)
        end)
      end)
      assert.equal(2, #err.errors)
      assert.equal("parent task failed", err.errors[1])
      local inner = err.errors[2]
      assert.is_true(loom.is(inner, loom.ErrorGroup))
      assert.same({ "child task failed" }, inner.errors)
    end)
  end)

  it("keeps an ErrorGroup raised by the body as one member",
    function()
      run(function()
        local raised = loom.ErrorGroup("mine", { "a", "b" })
        local err = group_error(function() error(raised) end)
        assert.equal(1, #err.errors)
        assert.is_true(rawequal(raised, err.errors[1]))
      end)
    end)

  it("gives errors priority over an outer cancellation", function()
    run(function()
      local outer = loom.cancel_scope()
      local err = H.capture_error(outer.run, outer, function()
        loom.task_group(function(tg)
          tg:start_soon(function() error("child", 0) end)
          outer:cancel()
        end)
      end)
      assert.is_true(loom.is(err, loom.ErrorGroup))
      assert.same({ "child" }, err.errors)
      assert.is_false(outer.cancelled_caught)
    end)
  end)

  it("a body that swallowed its Cancelled still raises the children's "
    .. "errors", function()
    run(function()
      local events, add = log()
      local err = group_error(function(tg)
        tg:start_soon(function() error("child", 0) end)
        local _, e = pcall(loom.sleep_forever)
        add(loom.is_cancelled(e) and "body cancelled" or "?")
        _, e = pcall(loom.checkpoint)
        add(loom.is_cancelled(e) and "cancelled again" or "?")
        add("body returns")
      end)
      assert.same({ "child" }, err.errors)
      assert.same({ "body cancelled", "cancelled again", "body returns" },
        events)
    end)
  end)
end)

describe("task group cancellation", function()
  it("tg:cancel() exits without error and sets cancelled_caught ("
    .. "AnyIO test_escaping_cancelled_exception)", function()
    run(function()
      local saved
      local reached = false
      local r = table.pack(loom.task_group(function(tg)
        saved = tg
        tg:cancel()
        loom.sleep(0)
        reached = true
      end))
      assert.equal(0, r.n)
      assert.is_false(reached)
      assert.is_true(saved.cancel_scope.cancel_called)
      assert.is_true(saved.cancel_scope.cancelled_caught)
    end)
  end)

  it("tg:cancel() is not a checkpoint (AnyIO "
    .. "test_level_cancellation)", function()
    run(function()
      local marker
      loom.task_group(function(tg)
        tg:start_soon(function()
          marker = 1
          loom.sleep(0)
          marker = 2
        end)
        assert.is_nil(marker)
        tg:cancel()
        marker = "host ran on"
      end)
      assert.equal(1, marker)
    end)
  end)

  it("tg:cancel() without a later checkpoint leaves cancelled_caught "
    .. "false", function()
    run(function()
      local saved
      assert.equal("v", loom.task_group(function(tg)
        saved = tg
        tg:cancel()
        return "v"
      end))
      assert.is_true(saved.cancel_scope.cancel_called)
      assert.is_false(saved.cancel_scope.cancelled_caught)
    end)
  end)

  it("tg:cancel(reason) puts the reason in the children's Cancelled",
    function()
      run(function()
        local got
        loom.task_group(function(tg)
          tg:start_soon(function()
            local _, e = pcall(loom.sleep_forever)
            got = e
          end)
          loom.wait_all_tasks_blocked()
          tg:cancel("shutting down")
        end)
        assert.is_true(loom.is_cancelled(got))
        H.contains(got.message, "shutting down")
      end)
    end)

  it("tg:cancel() is tg.cancel_scope:cancel()", function()
    run(function()
      local saved
      loom.task_group(function(tg)
        saved = tg
        tg.cancel_scope:cancel()
        tg:start_soon(loom.sleep_forever)
        loom.sleep_forever()
      end)
      assert.is_true(saved.cancel_scope.cancelled_caught)
    end)
  end)

  it("a deadline on tg.cancel_scope ends the group cleanly", function()
    run(function()
      local saved
      local t0 = loom.now()
      loom.task_group(function(tg)
        saved = tg
        tg.cancel_scope.deadline = loom.now() + 0.01
        tg:start_soon(loom.sleep_forever)
        loom.sleep_forever()
      end)
      assert.is_true(saved.cancel_scope.cancel_called)
      assert.is_true(saved.cancel_scope.cancelled_caught)
      assert.is_true(loom.now() - t0 < 5)
    end)
  end)

  it("a child may cancel its own group (race pattern)", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.sleep(0.01)
          add("fast wins")
          tg:cancel()
        end)
        tg:start_soon(function()
          loom.sleep(1)
          add("slow wins")
          tg:cancel()
        end)
      end)
    end)
    assert.same({ "fast wins" }, events)
  end)

  it("a child spawned into a cancelled group runs to its first "
    .. "checkpoint (Trio test_precancelled_task)", function()
    local record = {}
    run(function()
      loom.task_group(function(tg)
        tg:cancel()
        tg:start_soon(function()
          record[#record + 1] = "started"
          loom.sleep_forever()
          record[#record + 1] = "not reached"
        end)
      end)
    end)
    assert.same({ "started" }, record)
  end)

  it("a child spawned by a sibling into a cancelled group still starts "
    .. "(AnyIO test_cancelled_parent)", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.cancel_shielded_checkpoint()
          tg:start_soon(function()
            add("child started")
            loom.cancel_scope():run(function() loom.sleep(1) end)
            error("foo")
          end)
        end)
        tg:cancel()
      end)
    end)
    assert.same({ "child started" }, events)
  end)

  it("cancels nested groups' children (Trio test_cancel_inheritance)",
    function()
      local record = {}
      run(function()
        local function leaf(ident)
          local _, e = pcall(loom.sleep_forever)
          if loom.is_cancelled(e) then record[#record + 1] = ident end
        end
        local function worker(ident)
          loom.task_group(function(tg)
            tg:start_soon(leaf, ident .. "-l1")
            tg:start_soon(leaf, ident .. "-l2")
          end)
        end
        loom.task_group(function(tg)
          tg:start_soon(worker, "w1")
          tg:start_soon(worker, "w2")
          tg:cancel()
        end)
      end)
      assert.same({ "w1-l1", "w1-l2", "w2-l1", "w2-l2" }, record)
    end)

  it("cancels a nested group's waiting host (AnyIO "
    .. "test_cancel_propagation)", function()
    run(function()
      local reached = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.task_group(function() loom.sleep(1) end)
          reached = true
        end)
        loom.sleep(0)
        tg:cancel()
      end)
      assert.is_false(reached)
    end)
  end)

  it("cancels an inner group's children and body (AnyIO "
    .. "test_cancel_propagation_with_inner_spawn)", function()
    run(function()
      local reached = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.task_group(function(tg2)
            tg2:start_soon(loom.sleep, 10)
            loom.sleep(1)
          end)
          reached = true
        end)
        loom.wait_all_tasks_blocked()
        tg:cancel()
      end)
      assert.is_false(reached)
    end)
  end)

  it("cancels children that wait in an inner group's exit (AnyIO "
    .. "test_cancel_cascade / test_cancel_exiting_task_group)", function()
    run(function()
      local cancel_received = false
      local reached = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.task_group(function(tg2)
            tg2:start_soon(function()
              local _, e = pcall(loom.sleep, 5)
              cancel_received = true
              error(e, 0)
            end)
          end)
          reached = true
        end)
        loom.wait_all_tasks_blocked()
        tg:cancel()
      end)
      assert.is_true(cancel_received)
      assert.is_false(reached)
    end)
  end)

  it("the same host can be cancelled twice (AnyIO test_cancel_twice)",
    function()
      run(function()
        for _ = 1, 2 do
          local saved
          loom.task_group(function(tg)
            saved = tg
            tg:start_soon(function()
              loom.wait_all_tasks_blocked()
              tg:cancel()
            end)
            loom.sleep(1)
            error("execution should not reach this point")
          end)
          assert.is_true(saved.cancel_scope.cancelled_caught)
        end
      end)
    end)

  it("re-raises one bare Cancelled to the outer scope that caused it "
    .. "(AnyIO test_single_cancellation_exc)", function()
    run(function()
      local outer = loom.cancel_scope()
      local caught
      outer:run(function()
        local _, e = pcall(loom.task_group, function(tg)
          tg:start_soon(loom.sleep, 5)
          loom.wait_all_tasks_blocked()
          outer:cancel()
          loom.sleep(5)
        end)
        caught = e
        error(e, 0)
      end)
      assert.is_true(loom.is_cancelled(caught))
      assert.is_false(loom.is(caught, loom.ErrorGroup))
      assert.is_true(outer.cancelled_caught)
    end)
  end)

  it("keeps waiting for children when the host is cancelled while "
    .. "exiting", function()
    local events, add = log()
    run(function()
      local s = loom.move_on_after(0.01, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            loom.cancel_scope{ shield = true }:run(function()
              loom.sleep(0.03)
            end)
            add("child done")
          end)
          add("body done")
        end)
        add("not reached")
      end)
      add("after")
      assert.is_true(s.cancelled_caught)
    end)
    assert.same({ "body done", "child done", "after" }, events)
  end)

  it("cancels the group's scope when the host is cancelled while exiting "
    .. "", function()
    run(function()
      local saved
      local s = loom.move_on_after(0.01, function()
        loom.task_group(function(tg)
          saved = tg
          tg:start_soon(loom.sleep_forever)
        end)
      end)
      assert.is_true(s.cancelled_caught)
      assert.is_true(saved.cancel_scope.cancel_called)
      assert.is_false(saved.cancel_scope.cancelled_caught)
    end)
  end)

  it("a body that swallowed its Cancelled exits cleanly while children "
    .. "remain ", function()
    run(function()
      local saved
      loom.task_group(function(tg)
        saved = tg
        tg:start_soon(loom.sleep_forever)
        loom.wait_all_tasks_blocked()
        tg:cancel()
        local _, e = pcall(loom.sleep_forever)
        assert.is_true(loom.is_cancelled(e))
        return "swallowed"
      end)
      assert.is_true(saved.cancel_scope.cancel_called)
      -- the host is cancelled while it waits for the child
      assert.is_true(saved.cancel_scope.cancelled_caught)
    end)
  end)

  it("a body that swallowed its Cancelled, with no child left, exits "
    .. "without raising", function()
    run(function()
      local saved
      local r = table.pack(loom.task_group(function(tg)
        saved = tg
        tg:start_soon(function() end)
        loom.cancel_shielded_checkpoint()  -- the child runs and ends
        tg:cancel()
        local _, e = pcall(loom.sleep_forever)
        assert.is_true(loom.is_cancelled(e))
        return "swallowed"
      end))
      assert.same({ n = 1, "swallowed" }, r)
      assert.is_false(saved.cancel_scope.cancelled_caught)
    end)
  end)

  it("children inherit the scopes where the group was opened, not where "
    .. "start_soon was called", function()
    local events, add = log()
    run(function()
      loom.task_group(function(tg)
        loom.move_on_after(0, function()
          tg:start_soon(function()
            loom.sleep(0.01)
            add("child finished")
          end)
        end)
      end)
    end)
    assert.same({ "child finished" }, events)
  end)

  it("children see the deadlines active where the group was opened",
    function()
      run(function()
        local seen
        local outer = loom.move_on_after(30, function()
          loom.task_group(function(tg)
            loom.move_on_after(10, function()
              tg:start_soon(function()
                seen = loom.current_effective_deadline()
              end)
            end)
          end)
        end)
        assert.equal(outer.deadline, seen)
      end)
    end)

  it("children inherit a cancellation active where the group was opened",
    function()
      local events, add = log()
      run(function()
        local s = loom.cancel_scope()
        s:run(function()
          s:cancel()
          loom.task_group(function(tg)
            tg:start_soon(function()
              add("started")
              local _, e = pcall(loom.checkpoint)
              add(loom.is_cancelled(e) and "cancelled" or "?")
            end)
          end)
        end)
        assert.is_true(s.cancelled_caught)
      end)
      assert.same({ "started", "cancelled" }, events)
    end)

  it("a shield in the host does not protect the children (AnyIO "
    .. "test_cancel_child_task_when_host_is_shielded)", function()
    run(function()
      local cancelled = false
      local parent = loom.cancel_scope()
      parent:run(function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            local _, e = pcall(loom.sleep_forever)
            if loom.is_cancelled(e) then cancelled = true end
            error(e, 0)
          end)
          loom.wait_all_tasks_blocked()
          loom.cancel_scope{ shield = true }:run(function()
            loom.fail_after(1, function()
              parent:cancel()
              while not cancelled do loom.checkpoint() end
            end)
          end)
        end)
      end)
      assert.is_true(cancelled)
    end)
  end)

  it("cancelling a scope inside a child affects only that child ("
    .. "AnyIO test_cancel_scope_in_child_task)", function()
    run(function()
      local child_scope
      local host_done = false
      local saved
      loom.task_group(function(tg)
        saved = tg
        tg:start_soon(function()
          child_scope = loom.cancel_scope()
          child_scope:run(function() loom.sleep(2) end)
        end)
        loom.wait_all_tasks_blocked()
        child_scope:cancel()
        loom.sleep(0.01)
        host_done = true
      end)
      assert.is_true(host_done)
      assert.is_true(child_scope.cancelled_caught)
      assert.is_false(saved.cancel_scope.cancel_called)
    end)
  end)

  it("a cancelled group's body sees Cancelled at every checkpoint",
    function()
      run(function()
        local n = 0
        loom.task_group(function(tg)
          tg:cancel()
          for _ = 1, 3 do
            local _, e = pcall(loom.checkpoint)
            if loom.is_cancelled(e) then n = n + 1 end
          end
        end)
        assert.equal(3, n)
      end)
    end)
end)

-- The errors of a misspelt method, a misspelt field and a write.
local function rejects_bad_members(tg)
  H.fails_with("loom.TaskGroup has no method 'start_son' (did you "
    .. "mean 'start_soon'?)", function() return tg.start_son end)
  H.fails_with("loom.TaskGroup has no field 'cancel_scop' (did you "
    .. "mean 'cancel_scope'?)", function() return tg.cancel_scop end)
  H.fails_with("attempt to index a loom.TaskGroup value",
    function() tg.cancel_scope = 1 end)
end

describe("a TaskGroup object", function()
  it("answers its own cancel_scope and the shared methods", function()
    run(function()
      loom.task_group(function(a)
        loom.task_group(function(b)
          assert.are_not.equal(a.cancel_scope, b.cancel_scope)
          assert.equal(a.start_soon, b.start_soon)
          assert.equal(a.start, b.start)
          assert.equal(a.cancel, b.cancel)
          assert.equal(a.start_soon, a.create_task)
          assert.truthy(tostring(a):find("^loom%.TaskGroup: "))
          local h = b:start_soon(loom.current_task)
          h:wait()
          assert.equal(h, h:result())
          b:cancel()
          assert.is_true(b.cancel_scope.cancel_called)
          assert.is_false(a.cancel_scope.cancel_called)
        end)
      end)
    end)
  end)

  it("answers the same once it has spawned many children", function()
    run(function()
      loom.task_group(function(tg)
        local scope, spawn = tg.cancel_scope, tg.start_soon
        local n = 0
        for _ = 1, 20 do tg:start_soon(function() n = n + 1 end) end
        assert.equal(scope, tg.cancel_scope)
        assert.equal(spawn, tg.start_soon)
        assert.equal(spawn, tg.create_task)
        assert.truthy(tostring(tg):find("^loom%.TaskGroup: "))
        rejects_bad_members(tg)
        loom.sleep(0)
        assert.equal(20, n)
        tg:cancel()
        assert.is_true(scope.cancel_called)
      end)
    end)
  end)

  it("rejects a misspelt member and a write with clear errors", function()
    run(function()
      loom.task_group(function(tg)
        rejects_bad_members(tg)
        H.fails_with("loom.TaskGroup expected, got number",
          function() tg.start_soon(1, print) end)
      end)
    end)
  end)
end)
