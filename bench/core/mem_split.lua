-- Bytes per parked task, split into what the task costs before it first
-- runs (its userdata: struct loom_task, user values, registry anchor) and
-- what running and parking it adds (its coroutine: lua_State, stack,
-- CallInfo frames, registry anchor). Measured on the Lua heap
-- (collectgarbage "count", after full collections), so C-side mallocs are
-- not included: the deadline heap (8 bytes per sleeping task) and the
-- coroutine pool's arrays. For reference, the same for bare Lua coroutines
-- parked at a similar depth (a pcall, then a yield from C).
--
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/core/mem_split.lua [P]
local loom = require("loom")

local P = tonumber(arg and arg[1]) or 100000

local function heap()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count") * 1024
end

local function row(label, bytes)
  print(("%-52s %8.0f bytes"):format(label, bytes))
end

-- Coroutines the pool keeps are reused by spawns; start from an empty pool
-- so that the coroutine figure is a fresh coroutine's.
local base, spawned, parked, after
loom.run(function()
  loom.task_group(function(tg)
    base = heap()
    for _ = 1, P do tg:start_soon(loom.sleep, 3600) end
    spawned = heap()         -- P tasks spawned, none has run yet
    loom.wait_all_tasks_blocked()
    parked = heap()          -- all P parked in sleep
    tg.cancel_scope:cancel()
  end)
end)
after = heap()

local layout = require("loom.core").layout
print(("loom %s, lua5.4, %d tasks parked in loom.sleep(3600)"):format(
  require("loom.core").version, P))
row("task (spawned, not yet run: Lua heap: handle + anchors)",
  (spawned - base) / P)
if layout then
  -- The task's C struct lives outside the Lua heap (malloc, plus malloc's
  -- own 8-16 bytes per block): counted apart.
  row("task struct (C memory, outside the Lua heap)", layout().task)
end
row("coroutine added by running and parking it", (parked - spawned) / P)
row("total per parked task (Lua heap)", (parked - base) / P)
if layout then
  row("total per parked task (with the C struct)",
    (parked - base) / P + layout().task)
end
row("left after the run (pooled coroutines, per task)", (after - base) / P)

-- Bare Lua: a coroutine parked inside pcall, yielding from C (like a task
-- parked in a loom call). The array holding them is measured apart.
local function body() pcall(coroutine.yield) end
local function array_bytes()
  local t0 = heap()
  local slots = {}
  for i = 1, P do slots[i] = true end
  local bytes = heap() - t0
  assert(#slots == P)
  return bytes
end
local array = array_bytes()
local b0 = heap()
local cos = {}
for i = 1, P do
  local co = coroutine.create(body)
  coroutine.resume(co)
  cos[i] = co
end
row("bare coroutine parked in pcall(coroutine.yield)",
  (heap() - b0 - array) / P)
assert(#cos == P)
