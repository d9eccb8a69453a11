-- The game logic of examples/host_60fps.c, a C "engine" running at 60 FPS
-- on game time. The engine loads this file into each of its runtimes and
-- calls the functions of the table it returns; run alone (lua5.4
-- examples/host_60fps.lua) it only defines them.
local loom = require("loom")

local game = {}

-- A <close> value that says when a task's cleanup ran.
local function cleanup(what)
  return setmetatable({}, { __close = function()
    print(("  cleanup: %s (frame %d, t = %.3f)"):format(what, loom.frame(),
      loom.now()))
  end })
end

local level, background, menu
local villager_steps = 0

--- The level: a host group whose tasks the engine never sees. engine is
--- the C side: engine.start_job(future, n, due_frame) computes on a worker
--- thread and resolves the future at frame due_frame.
function game.load_level(engine)
  level = loom.host_group("forest")
  local send, recv = loom.channel(32)

  -- The HUD prints what happens in the level.
  level:start_soon(function()
    local _ <close> = cleanup("HUD")
    for line in recv do
      print(("[forest %3d] %s"):format(loom.frame(), line))
    end
  end)

  -- A guard moves a little every frame.
  level:start_soon(function()
    local _ <close> = cleanup("guard")
    local x = 0
    while true do
      x = x + 1
      if x % 20 == 0 then send:send("guard patrols to x = " .. x) end
      loom.next_frame()
    end
  end)

  -- A merchant restocks twice a second, on game time.
  level:start_soon(function()
    local _ <close> = cleanup("merchant")
    while true do
      loom.sleep(0.5)
      send:send(("merchant restocks at t = %.3f"):format(loom.now()))
    end
  end)

  -- A crowd: more tasks than one step's resume budget.
  for i = 1, 100 do
    level:start_soon(function()
      local _ <close> = i == 1 and cleanup("villagers") or nil
      while true do
        villager_steps = villager_steps + 1
        loom.next_frame()
      end
    end)
  end

  -- A pathfinder hands work to a worker thread and waits for its future.
  level:start_soon(function()
    local f = loom.future()
    engine.start_job(f, 1000, 30)
    send:send("path found: cost " .. f:wait())
    local g = loom.future()
    engine.start_job(g, -1, 45)
    local ok, err = pcall(g.wait, g)
    send:send(("second path: %s, %s"):format(ok, err))
  end)

  -- A dragon sleeps for an hour of game time; a sentry waits for orders.
  level:start_soon(function()
    local _ <close> = cleanup("dragon")
    loom.sleep(3600)
  end)
  local orders_send, orders = loom.channel(0)
  level:start_soon(function()
    local _ <close> = cleanup("sentry")
    orders:receive()
  end)
  game.orders = orders_send  -- kept open: the sentry waits on
end

--- The background group: isolating, so that a failing task goes to the
--- error hook and its siblings keep running.
function game.start_background()
  background = loom.host_group("background")
  local autosave = background:create_task(function()
    loom.sleep(0.4)
    error("autosave: disk full", 0)
  end)
  autosave.name = "autosave"
  background:start_soon(function()
    local _ <close> = cleanup("telemetry")
    while true do
      loom.sleep(1)
      print(("[background] telemetry at t = %.3f"):format(loom.now()))
    end
  end)
end

--- Unload the level: one call cancels its tasks and runs their cleanup.
function game.unload_level()
  print(("[forest %3d] unloading the level, %d tasks alive"):format(
    loom.frame(), level:alive()))
  local done = level:close()
  print(("[forest %3d] unloaded: %s, %d alive, villagers took %d steps")
    :format(loom.frame(), done, level:alive(), villager_steps))
end

--- The second runtime: the engine's menu, on its own clock.
function game.start_menu()
  menu = loom.host_group("menu")
  menu:start_soon(function()
    local lit = false
    while true do
      loom.sleep(0.25)
      lit = not lit
      print(("[menu   %3d] title %s"):format(loom.frame(),
        lit and "lit" or "dim"))
    end
  end)
  menu:start_soon(function()
    loom.next_frame(45)
    print(("[menu   %3d] 45 frames later, press start"):format(
      loom.frame()))
  end)
end

return game
