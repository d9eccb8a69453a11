-- AnyIO "Asyncio call graph introspection support", in loom.
--
-- Python 3.14's asyncio.print_call_graph() shows which tasks wait for which.
-- loom.task_tree() returns a tree of every live task: its name, id and
-- status, the groups it hosts with their children, and what each task is
-- waiting on, with the `source:line` of the call that blocks. Printing it
-- (tostring) gives an indented tree.
--
-- Differences from the Python original:
--   * the whole tree is shown from the root task down, instead of one task
--     and the chain of tasks awaiting it;
--   * start_soon has no `name=` argument: set h.name on the handle it returns
--     (before the task runs, so the task sees its own name too);
--   * the root task's default name is "function <source>:<line>" of its
--     function; here it is named "main" (asyncio calls it "Task-1").
local loom = require("loom")

local function foo(level)
  if level == 3 then
    print(loom.task_tree())
    return
  end

  loom.task_group(function(tg)
    tg:start_soon(foo, level + 1).name = "Nesting level " .. (level + 1)
  end)
end

loom.run(function()
  loom.current_task().name = "main"
  foo(0)
end)
