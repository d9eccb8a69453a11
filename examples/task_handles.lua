-- AnyIO "Working with task handles", in loom.
--
-- tg:create_task(fn, ...) (or tg:start_soon, they are the same) returns a
-- TaskHandle that can be used to:
--   1. wait for the task to finish before the group exits  (h:wait, h:result)
--   2. get the task's return value or error                 (h:return_value,
--                                                             h:error)
--   3. cancel the task                                       (h:cancel)
--   4. check the task's status                               (h:status)
--
-- Differences from the Python original:
--   * AnyIO's create_task() takes a coroutine object; loom takes the function
--     and its arguments, as start_soon does.
--   * `await handle` is h:result(). It returns every value the function
--     returned, or raises loom.TaskFailed / loom.TaskCancelled.
--   * TaskHandle.Status.FINISHED is the string "finished" (the others are
--     "pending", "cancelling", "cancelled" and "failed").
--   * Lua arrays start at 1, so AnyIO's handles[1] is handles[2] here.
--
-- Prints:
--   2
--   Tasks finished: 0, 2, 3, 4
local loom = require("loom")

-- LOOM_EXAMPLE_FAST=1 (spec/examples_spec.lua sets it) shortens the sleeps;
-- the output does not change.
local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local function sometask(num)
  loom.sleep(1 * SCALE)
  return tostring(num)
end

local function main()
  local handles = {}
  loom.task_group(function(tg)
    for num = 0, 4 do
      handles[#handles + 1] = tg:create_task(sometask, num)
    end
    -- Cancel the task for num = 1. Only that task is cancelled: the group
    -- and its other tasks carry on, and the group records no error.
    handles[2]:cancel()
    -- Wait for the task for num = 2 and print what it returned.
    print(handles[3]:result())
  end)
  -- The handles outlive the group: every task has finished by now.
  local finished = {}
  for _, handle in ipairs(handles) do
    if handle:status() == "finished" then
      finished[#finished + 1] = handle:return_value()
    end
  end
  print("Tasks finished: " .. table.concat(finished, ", "))
end

loom.run(main)
