-- Regression: when task_group's exit code raised (out of memory), the group
-- was never waited for nor closed: its children outlived it and its
-- loom.run, and ran inside the next loom.run. The exit now allocates
-- nothing until every child finished and the scope was left.

local loom = require("loom")
local core = require("loom.core")

local H = require("helpers")
local inject, injection = H.inject, H.injection

describe("regression: errors in task_group's exit", function()
  it("children never outlive their group, whatever call fails", function()
    for n = 1, 60 do
      local handles = {}
      loom.run(function()
        pcall(function()
          loom.task_group(function(tg)
            handles[1] = tg:start_soon(loom.sleep, 0.001)
            handles[2] = tg:start_soon(loom.sleep_forever)
            handles[3] = tg:start_soon(error, "child failed")
            inject(n)
            loom.checkpoint()
          end)
        end)
        injection.disarmed = true
        debug.sethook()
        for _, h in ipairs(handles) do
          assert.is_true(h:done(), "a child outlived its group")
        end
        assert.equal(math.huge, loom.current_effective_deadline())
      end)
      assert.equal(0, core.stats().live_tasks)
    end
  end)

  it("a failed body with children still running waits for them", function()
    local order = {}
    loom.run(function()
      local ok, err = pcall(loom.task_group, function(tg)
        tg:start_soon(function()
          local s = loom.cancel_scope{ shield = true }
          s:run(loom.sleep, 0.01)
          order[#order + 1] = "child"
        end)
        loom.checkpoint()
        error("body")
      end)
      order[#order + 1] = "group exited"
      assert.is_false(ok)
      assert.is_true(loom.is(err, loom.ErrorGroup))
    end)
    assert.same({ "child", "group exited" }, order)
  end)
end)
