-- Context copy-on-write: a context no user code has seen is shared between
-- a task and the children it spawns, and copied by whichever asks
-- loom.context() for it first. The contract of loom.context() must not show
-- it: each task sees the copy taken when it was spawned, and no task sees
-- another's writes.

local loom = require("loom")
local H = require("helpers")

local run = H.run

describe("loom.context copy-on-write", function()
  it("a grandchild spawned before the child looked at its context sees "
    .. "the value taken at the child's spawn", function()
    local seen = {}
    run(function()
      loom.context().v = "root"
      loom.task_group(function(tg)
        tg:start_soon(function()
          -- this child never calls loom.context() before spawning
          tg:start_soon(function()
            seen.grandchild = loom.context().v
            loom.context().v = "grandchild"
          end)
          tg:start_soon(function()
            loom.wait_all_tasks_blocked()
            seen.grandchild2 = loom.context().v
          end)
          loom.wait_all_tasks_blocked()
          seen.child = loom.context().v
          loom.context().v = "child"
        end)
        loom.context().v = "root later"
      end)
      seen.root = loom.context().v
    end)
    assert.same({ grandchild = "root", grandchild2 = "root", child = "root",
      root = "root later" }, seen)
  end)

  it("a task that shares its context gets a table of its own from "
    .. "loom.context(), distinct from its children's", function()
    local tables = {}
    run(function()
      loom.context().k = 1
      loom.task_group(function(tg)
        tg:start_soon(function()
          tg:start_soon(function()
            tables.grandchild = loom.context()
          end)
          tables.child = loom.context()
          tables.child.k = 2
          assert.equal(tables.child, loom.context())
        end)
      end)
      tables.root = loom.context()
    end)
    assert.are_not.equal(tables.child, tables.grandchild)
    assert.are_not.equal(tables.root, tables.child)
    assert.equal(1, tables.grandchild.k)
    assert.equal(2, tables.child.k)
    assert.equal(1, tables.root.k)
  end)

  it("writes after spawning, by the child or the spawner, are not seen "
    .. "through a shared context", function()
    local seen = {}
    run(function()
      loom.context().v = 0
      loom.task_group(function(tg)
        tg:start_soon(function()
          local a, b
          tg:start_soon(function() a = loom.context() end)
          tg:start_soon(function()
            loom.wait_all_tasks_blocked()
            b = loom.context()
            seen.b = b.v
          end)
          loom.wait_all_tasks_blocked()
          a.v = "a wrote"
          loom.context().v = "child wrote"
          loom.wait_all_tasks_blocked()
          seen.a = a.v
        end)
      end)
    end)
    assert.same({ a = "a wrote", b = 0 }, seen)
  end)

  it("an empty context stays empty in every descendant", function()
    run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          tg:start_soon(function()
            assert.is_nil(next(loom.context()))
          end)
        end)
      end)
    end)
  end)
end)
