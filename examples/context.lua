-- AnyIO "Context propagation", in loom.
--
-- Python tasks carry contextvars; a loom task carries a context table,
-- loom.context(). Whenever a task is spawned (start_soon, create_task or
-- start), the new task gets a shallow copy of the context of the task that
-- *calls* start_soon/start, taken at that moment. It is not the context of
-- the group's host task. Later writes on either side are not seen by the
-- other. (asyncio's create_task(context=ctx) runs the task *in* ctx; loom
-- always copies, like AnyIO.)
local loom = require("loom")

local function show(who)
  print(("%-8s sees request_id=%s"):format(who,
    tostring(loom.context().request_id)))
end

local function grandchild()
  show("spawned")
end

local function child(tg)
  show("child")
  -- Spawned by this child into the host's group: it copies the child's
  -- context, not the host's.
  loom.context().request_id = "child"
  tg:start_soon(grandchild)
  loom.sleep(0)
  -- The child's own later writes stay in the child...
  loom.context().request_id = "child-later"
end

local function started(task_status)
  show("started")
  task_status:started()
end

local function main()
  show("host")                                -- the root starts empty
  loom.context().request_id = "host"
  loom.task_group(function(tg)
    tg:start_soon(child, tg)                  -- copies {request_id="host"}
    loom.context().request_id = "host2"       -- too late for that child
    tg:start(started)                         -- copies {request_id="host2"}
  end)
  show("host")                                -- ...and never reach the host
end

loom.run(main)
