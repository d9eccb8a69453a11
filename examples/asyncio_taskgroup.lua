-- The asyncio notebook's "Task groups" cells (In [12], [13], [18], [21]), in
-- loom. A loom task group is asyncio.TaskGroup's counterpart, with AnyIO's
-- rules:
--   * leaving loom.task_group(body) waits for every task (A);
--   * cancelling one task does not affect the rest (D);
--   * a failing task cancels the others (C), and the group raises a
--     loom.ErrorGroup (like asyncio's ExceptionGroup) (B).
-- Differences: loom.task_group(function(tg) ... end) replaces `async with`;
-- cancellation is level-triggered (every later checkpoint of a cancelled
-- task raises again); and a cancelled group still accepts new tasks (they
-- are cancelled at their first checkpoint) where asyncio refuses them.
local loom = require("loom")

local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local function some_coro(param)
  loom.sleep(1 * SCALE)
  print("Completed coro with param: " .. param)
end

-- In [12]: a group waits for all its tasks.
loom.run(function()
  loom.task_group(function(tg)                              -- A 1
    for i = 0, 2 do
      tg:create_task(some_coro, i)                          -- A 2
    end
  end)
end)

-- In [13]: cancelling one task leaves the others alone.
loom.run(function()
  loom.task_group(function(tg)
    local tasks = {}
    for i = 0, 2 do
      tasks[#tasks + 1] = tg:create_task(some_coro, i)
    end
    tasks[1]:cancel()                                       -- D
  end)
end)

-- In [18]: terminate a group by raising an error in a task, then catch it.
local TerminateTaskGroup = loom.error_class("TerminateTaskGroup")

local function force_terminate_task_group()
  error(TerminateTaskGroup())
end

local function job(task_id, sleep_time)
  print(("Task %d: start"):format(task_id))
  loom.sleep(sleep_time * SCALE)
  print(("Task %d: done"):format(task_id))
end

local function main18()
  -- `except* TerminateTaskGroup:` is loom.catch with one handler.
  loom.catch({ { TerminateTaskGroup, function()             -- B
    print("Task group terminated due to TerminateTaskGroup exception.")
  end } }, loom.task_group, function(group)
    group:create_task(job, 1, 0.5)
    group:create_task(job, 2, 1.5)
    loom.sleep(1 * SCALE)
    group:create_task(force_terminate_task_group)
  end)
end

loom.run(main18)

-- In [21]: the same without catching: the failing task cancels task 2 (C)
-- and the group raises. Uncaught, loom.run would raise it and lua5.4 would
-- print every error with its traceback; here we look at it instead.
local function main21()
  loom.task_group(function(group)
    group:create_task(job, 1, 0.5)
    group:create_task(job, 2, 1.5)
    loom.sleep(1 * SCALE)
    group:create_task(force_terminate_task_group)           -- C
  end)
end

local ok, eg = pcall(loom.run, main21)
print(("%s: %s (%d sub-error: %s)"):format(ok and "ok" or "ErrorGroup",
      eg.message, #eg.errors, tostring(eg.errors[1])))
