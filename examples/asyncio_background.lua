-- The asyncio notebook's "Creating tasks" cell, in loom.
--
-- asyncio: the event loop keeps only weak references to tasks, so a
-- "fire-and-forget" task can be garbage-collected mid-run unless the program
-- keeps it in a collection (A 1, A 2) and removes it when it is done
-- (A 3, add_done_callback(background_tasks.discard)).
--
-- loom is structured: there are no free-floating tasks. Every task lives in
-- a task group, and the group holds it (strongly) until it finishes, so no
-- set of references is needed. "Background" tasks are simply children of a
-- group that stays open while the rest of the program runs; leaving the
-- group waits for them (in a notebook the event loop just keeps running, and
-- their output appears later).
local loom = require("loom")

local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local function some_coro(param)
  loom.sleep(1 * SCALE)
  print("Completed coro with param: " .. param)
end

local function size(set)
  local n = 0
  for _ in pairs(set) do n = n + 1 end
  return n
end

local function main()
  loom.task_group(function(background)    -- A 1: the group owns the tasks
    local running = {}                    -- only to show the bookkeeping
    for i = 0, 9 do
      -- A 2: a handle is returned, but nothing needs to keep it.
      local h
      h = background:create_task(function()
        some_coro(i)
        running[h] = nil                  -- A 3: the "done callback"
      end)
      running[h] = true
    end

    -- `await asyncio.sleep(0)`: yield once; the tasks start running.
    loom.sleep(0)
    print("main goes on while " .. size(running) .. " tasks run")
    loom.sleep(1.5 * SCALE)               -- the rest of the program
    print("tasks still running: " .. size(running))
  end)
  print("the group exited: every background task has finished")
end

loom.run(main)
