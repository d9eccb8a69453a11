-- Regression: an error between "the scope became the task's current one"
-- and "its exit is guaranteed" (out of memory in table.pack, the hook that
-- builds the Cancelled of a deadline already passed, luaL_ref after
-- entering a group) orphaned the scope: it stayed current, its __gc freed
-- it still linked, and the next checkpoint read freed memory. Entering and
-- leaving are now one C call around a protected region; these inject an
-- error at every call the entering task makes (a call hook raising where
-- out of memory would) and check that the scope tree is intact after.

local loom = require("loom")
local core = require("loom.core")

local inf = math.huge

local H = require("helpers")
local inject, injection = H.inject, H.injection

-- The scope tree of the running task is intact: nothing entered is left,
-- checkpoints work, a new scope can be entered and cancelled.
local function assert_intact()
  collectgarbage()
  collectgarbage()
  assert.equal(inf, loom.current_effective_deadline())
  loom.sleep(0)
  local s = loom.cancel_scope()
  s:run(function()
    s:cancel()
    loom.checkpoint()
  end)
  assert.is_true(s.cancelled_caught)
end

describe("regression: errors while entering a scope", function()
  it("the reproduction of the report (an error in the Cancelled hook)",
    function()
      loom.run(function()
        debug.sethook(function()
          if debug.getinfo(2, "S").source:find("errors.lua", 1, true) then
            debug.sethook()
            error("x")
          end
        end, "c")
        pcall(function()
          local s = loom.cancel_scope{ deadline = loom.now() - 1 }
          s:run(function() loom.checkpoint() end)
        end)
        injection.disarmed = true
        debug.sethook()
        assert_intact()
      end)
    end)

  it("scope:run with a past, a future and no deadline, failing at every "
    .. "call", function()
      for _, d in ipairs({ -1, 10, false }) do
        for n = 1, 40 do
          loom.run(function()
            local ok, err = pcall(function()
              local s = loom.cancel_scope{
                deadline = d and loom.now() + d or nil }
              inject(n)
              return s:run(function(a)
                loom.checkpoint()
                return a
              end, 1)
            end)
            injection.disarmed = true
            debug.sethook()
            assert.is_true(ok or err == "injected" or loom.is_cancelled(err)
              or loom.is(err, loom.Cancelled), tostring(err))
            assert_intact()
          end)
        end
      end
      assert.equal(0, core.stats().live_tasks)
      assert.equal(0, core.stats().deadlines)
    end)

  it("move_on_after and fail_after, failing at every call", function()
    for n = 1, 40 do
      loom.run(function()
        pcall(function()
          inject(n)
          loom.move_on_after(0, loom.checkpoint)
        end)
        injection.disarmed = true
        debug.sethook()
        pcall(function()
          inject(n)
          loom.fail_after(0, loom.checkpoint)
        end)
        injection.disarmed = true
        debug.sethook()
        assert_intact()
      end)
    end
    assert.equal(0, core.stats().deadlines)
  end)
end)
