-- Per-task context tables (docs/api.md, loom.context). Port
-- of Trio test_contextvar_multitask and the AnyIO context propagation docs.

local loom = require("loom")
local H = require("helpers")

local run = H.run

describe("loom.context", function()
  it("the root task starts with an empty table", function()
    run(function()
      local ctx = loom.context()
      assert.equal("table", type(ctx))
      assert.is_nil(next(ctx))
    end)
  end)

  it("returns the same table for the same task", function()
    run(function()
      local ctx = loom.context()
      ctx.x = 1
      assert.equal(ctx, loom.context())
      loom.checkpoint()
      assert.equal(ctx, loom.context())
      assert.equal(1, loom.context().x)
    end)
  end)

  it("is the task's context inside a coroutine running in the task",
    function()
      run(function()
        local ctx = loom.context()
        local co = coroutine.wrap(function()
          coroutine.yield(loom.context())
        end)
        assert.equal(ctx, co())
      end)
    end)

  it("every run starts afresh", function()
    run(function() loom.context().leak = true end)
    run(function() assert.is_nil(loom.context().leak) end)
  end)

  it("the group body shares its host's context", function()
    run(function()
      local ctx = loom.context()
      loom.task_group(function()
        assert.equal(ctx, loom.context())
      end)
    end)
  end)

  it("a child gets a copy of the spawner's context taken at spawn time "
    .. "(Trio test_contextvar_multitask)", function()
    local seen = {}
    run(function()
      local ctx = loom.context()
      ctx.var = "host"
      loom.task_group(function(tg)
        tg:start_soon(function()
          seen.child1 = loom.context().var
          loom.context().var = "spawner"
          tg:start_soon(function()
            seen.grandchild = loom.context().var
          end)
          loom.checkpoint()
          seen.child1_after = loom.context().var
        end)
        ctx.var = "host2"
        tg:start_soon(function() seen.child2 = loom.context().var end)
        loom.wait_all_tasks_blocked()
        seen.host = ctx.var
      end)
    end)
    assert.same({ child1 = "host", grandchild = "spawner",
      child1_after = "spawner", child2 = "host2", host = "host2" }, seen)
  end)

  it("copies are independent both ways", function()
    run(function()
      local ctx = loom.context()
      ctx.a = "host"
      local child_ctx
      loom.task_group(function(tg)
        tg:start_soon(function()
          child_ctx = loom.context()
          loom.wait_all_tasks_blocked()
          assert.equal("host", child_ctx.a)
          assert.is_nil(child_ctx.b)
          child_ctx.c = "child"
        end)
        loom.checkpoint()
        ctx.b = "host later"
      end)
      assert.are_not.equal(ctx, child_ctx)
      assert.is_nil(ctx.c)
      assert.equal("host later", ctx.b)
    end)
  end)

  it("the copy is shallow: table values are shared", function()
    run(function()
      local shared = { n = 0 }
      loom.context().shared = shared
      loom.task_group(function(tg)
        tg:start_soon(function()
          local mine = loom.context().shared
          assert.equal(shared, mine)
          mine.n = mine.n + 1
        end)
      end)
      assert.equal(1, shared.n)
    end)
  end)

  it("copies keys of every type", function()
    run(function()
      local ctx = loom.context()
      local key = {}
      ctx[key] = "table key"
      ctx[1] = "one"
      ctx[true] = false
      loom.task_group(function(tg)
        tg:start_soon(function()
          local c = loom.context()
          assert.equal("table key", c[key])
          assert.equal("one", c[1])
          assert.is_false(c[true])
        end)
      end)
    end)
  end)

  it("create_task copies the spawner's context too", function()
    run(function()
      loom.context().v = "before"
      local got
      loom.task_group(function(tg)
        tg:create_task(function() got = loom.context().v end)
        loom.context().v = "after"
      end)
      assert.equal("before", got)
    end)
  end)

  it("a child spawned from a coroutine running in a task copies that "
    .. "task's context", function()
    run(function()
      loom.context().who = "host"
      local got
      loom.task_group(function(tg)
        coroutine.wrap(function()
          tg:start_soon(function() got = loom.context().who end)
        end)()
      end)
      assert.equal("host", got)
    end)
  end)

  it("a child of a task with an empty context gets its own empty table",
    function()
      run(function()
        local child_ctx
        loom.task_group(function(tg)
          tg:start_soon(function()
            child_ctx = loom.context()
            child_ctx.x = "child"
          end)
        end)
        assert.is_nil(next(loom.context()))
        assert.are_not.equal(loom.context(), child_ctx)
      end)
    end)

  it("a value removed before spawning is not copied", function()
    run(function()
      local ctx = loom.context()
      ctx.gone = true
      ctx.kept = true
      ctx.gone = nil
      loom.task_group(function(tg)
        tg:start_soon(function()
          assert.is_nil(loom.context().gone)
          assert.is_true(loom.context().kept)
        end)
      end)
    end)
  end)

  it("siblings do not see each other's writes", function()
    run(function()
      loom.context().shared_key = 0
      local seen = {}
      loom.task_group(function(tg)
        for i = 1, 3 do
          tg:start_soon(function()
            local c = loom.context()
            seen[i] = c.shared_key
            c.shared_key = i
            loom.checkpoint()
            assert.equal(i, c.shared_key)
          end)
        end
      end)
      assert.same({ 0, 0, 0 }, seen)
      assert.equal(0, loom.context().shared_key)
    end)
  end)
end)

describe("where a task's context is kept", function()
  -- A live task's context and a failed task's traceback share one slot of
  -- the runtime (a task never needs both at once).
  it("a failing task with a context: its handle keeps the traceback, "
    .. "not the context", function()
    local h, weak = nil, setmetatable({}, { __mode = "v" })
    run(function()
      loom.context().who = "parent"
      pcall(loom.task_group, function(tg)
        h = tg:start_soon(function()
          local ctx = loom.context()
          ctx.mine = {}
          weak.ctx = ctx
          loom.checkpoint()
          error("failed here")
        end)
      end)
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak.ctx)
    assert.equal("failed", h:status())
    H.contains(h:error(), "failed here")
    local ok, failed = pcall(h.return_value, h)
    assert.is_false(ok)
    assert.is_true(loom.is(failed, loom.TaskFailed))
    assert.equal("string", type(failed.traceback))
    H.contains(failed.traceback, "context_spec")
  end)

  it("a finished task's handle does not keep its context alive", function()
    local hs, weak = {}, setmetatable({}, { __mode = "k" })
    run(function()
      loom.context().base = true
      loom.task_group(function(tg)
        for i = 1, 50 do
          hs[i] = tg:start_soon(function()
            local ctx = loom.context()
            ctx.i = i
            weak[ctx] = true
            loom.checkpoint()
            return loom.context().i
          end)
        end
      end)
    end)
    collectgarbage()
    collectgarbage()
    assert.is_nil(next(weak))
    for i = 1, 50 do assert.equal(i, hs[i]:return_value()) end
  end)

  it("a shared context read after the spawner finished is still the "
    .. "spawner's", function()
    local got
    run(function()
      loom.task_group(function(tg)
        local ready = loom.event()
        tg:start_soon(function()
          loom.context().k = "v"
          tg:start_soon(function()
            ready:wait()
            got = loom.context().k
          end)
        end)
        loom.wait_all_tasks_blocked()
        collectgarbage()
        ready:set()
      end)
    end)
    assert.equal("v", got)
  end)
end)
