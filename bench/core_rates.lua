-- Issue 2 numbers: spawn -> run -> finish throughput of one task group, and
-- the memory cost of a parked (sleeping) task. Run from the repo root:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" lua5.4 bench/core_rates.lua [N] [P]
local loom = require("loom")

local N = tonumber(arg and arg[1]) or 1000000
local P = tonumber(arg and arg[2]) or 100000

local function trivial() end

collectgarbage("collect")
local t0 = os.clock()
local w0 = loom.now()
loom.run(function()
  loom.task_group(function(tg)
    for _ = 1, N do tg:start_soon(trivial) end
  end)
end)
local wall = loom.now() - w0
print(("spawn+run+finish: %d tasks in %.3f s wall (%.3f s cpu): %.0f tasks/s, %.0f ns/task")
  :format(N, wall, os.clock() - t0, N / wall, wall / N * 1e9))

-- Bytes per parked task: the Lua heap (collectgarbage "count") while P
-- tasks sleep, minus the heap before; C-side structs live inside the
-- userdata, so they are counted too.
collectgarbage("collect")
local before, during
loom.run(function()
  loom.task_group(function(tg)
    for _ = 1, P do tg:start_soon(loom.sleep, 3600) end
    loom.wait_all_tasks_blocked()
    collectgarbage("collect")
    before = before or 0
    during = collectgarbage("count") * 1024
    tg:cancel()
  end)
end)
collectgarbage("collect")
local after = collectgarbage("count") * 1024
print(("parked: %d sleeping tasks hold %.0f bytes each (Lua heap %.1f MB while parked, %.1f MB after)")
  :format(P, (during - after) / P, during / 2^20, after / 2^20))

-- Issue 3 numbers: one create_task + result() round trip, and task_tree()
-- (the data and its printed form) with 10,000 live tasks.
local R = 200000
loom.run(function()
  loom.task_group(function(tg)
    local function answer(x) return x end
    local start = loom.now()
    for i = 1, R do
      local h = tg:create_task(answer, i)
      assert(h:result() == i)
    end
    local dt = loom.now() - start
    print(("create_task + result(): %d round trips in %.3f s: %.2f us each")
      :format(R, dt, dt / R * 1e6))
  end)
end)

loom.run(function()
  loom.task_group(function(tg)
    for _ = 1, 100 do
      tg:start_soon(function()
        loom.task_group(function(inner)
          for _ = 1, 99 do inner:start_soon(loom.sleep, 3600) end
          loom.sleep(3600)
        end)
      end)
    end
    loom.wait_all_tasks_blocked()
    local start = loom.now()
    local tree = loom.task_tree()
    local t1 = loom.now()
    local text = tostring(tree)
    local t2 = loom.now()
    local lines = select(2, text:gsub("\n", "\n")) + 1
    print(("task_tree(): 10,000 tasks: %.1f ms to build, %.1f ms to print "
      .. "(%d lines)"):format((t1 - start) * 1e3, (t2 - t1) * 1e3, lines))
    tg:cancel()
  end)
end)
