-- Regression: loom.run cancels and finishes the tasks of its own run that
-- are still live when it ends (a failed drain, a host whose coroutine was
-- killed). Tasks of host groups are not the run's: a closed host group's
-- straggler (close(0) returned false) that happens to run during a later
-- loom.run must be left to finish on its own, neither cancelled again nor
-- abandoned by that run.

local loom = require("loom")
local core = require("loom.core")

describe("regression: loom.run and host groups", function()
  it("leaves a closed host group's straggler to finish on its own",
    function()
      local log = {}
      local hg = loom.host_group("stragglers")
      hg:start_soon(function()
        -- Shielded: the close cancels the group, this wait still runs out.
        loom.cancel_scope{ shield = true }:run(loom.sleep, 0.01)
        log[#log + 1] = "straggler done"
      end)
      loom.step()
      assert.is_false(hg:close(0))
      assert.equal(1, hg:alive())
      loom.run(function()
        loom.sleep(0.05)
        log[#log + 1] = "run done"
      end)
      assert.same({ "straggler done", "run done" }, log)
      assert.equal(0, hg:alive())
      assert.equal(0, core.stats().live_tasks)
    end)

  it("still finishes a straggler that outlives the run", function()
    local log = {}
    local hg = loom.host_group("late")
    hg:start_soon(function()
      loom.cancel_scope{ shield = true }:run(loom.sleep, 0.05)
      log[#log + 1] = "straggler done"
    end)
    loom.step()
    assert.is_false(hg:close(0))
    loom.run(function() log[#log + 1] = "run done" end)
    -- The run did not touch it: it is still waiting, not abandoned.
    assert.same({ "run done" }, log)
    assert.equal(1, hg:alive())
    while hg:alive() > 0 do loom.step() end
    assert.same({ "run done", "straggler done" }, log)
    assert.equal(0, core.stats().live_tasks)
  end)
end)
