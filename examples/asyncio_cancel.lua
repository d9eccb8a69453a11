-- The asyncio notebook's "Task cancellation" cell, in loom.
--
-- asyncio: task.cancel() (A) schedules a CancelledError to be thrown into
-- the task at its next await (B); the task may catch it to clean up and
-- must re-raise it.
--
-- loom: h:cancel([reason]) cancels that one task; the group and its other
-- tasks carry on. The task gets loom.Cancelled at its next checkpoint (here
-- the sleep). Lua's `pcall` catches everything, so test the error with
-- loom.is_cancelled(err) and re-raise it with error(err, 0). Unlike asyncio,
-- a task cancelled before it ever ran still runs up to its first checkpoint.
--
-- The notebook picks the three tasks with set.pop(), which happened to give
-- 6, 9 and 5; Lua tables have no such randomness, so they are picked
-- explicitly. h:cancel() returns nothing (asyncio's cancel() returns True,
-- the "True" in the notebook's output).
local loom = require("loom")

local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local function some_coro(param)
  local ok, err = pcall(loom.sleep, 1 * SCALE)
  if not ok then
    if loom.is_cancelled(err) then                          -- B
      print("Cancelled coro with param: " .. param)
    end
    error(err, 0)                                           -- re-raise
  end
  print("Completed coro with param: " .. param)
end

local function main()
  local handles = {}
  loom.task_group(function(tg)
    for i = 0, 9 do
      handles[i] = tg:create_task(some_coro, i)
    end

    loom.sleep(0)
    for _, i in ipairs({ 6, 9, 5 }) do
      handles[i]:cancel()                                   -- A
    end
  end)

  local cancelled, completed = {}, {}
  for i = 0, 9 do
    local status = handles[i]:status()
    if status == "cancelled" then
      cancelled[#cancelled + 1] = tostring(i)
    elseif status == "finished" then
      completed[#completed + 1] = tostring(i)
    end
  end
  print("cancelled: " .. table.concat(cancelled, ", "))
  print("completed: " .. table.concat(completed, ", "))
end

loom.run(main)
