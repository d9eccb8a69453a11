-- A pure-Lua host loop, the shape of a Lua game engine's update(dt): game
-- time on a manual clock, the level's scripts in a host group, one
-- loom.step per frame, background errors reported instead of lost, and the
-- level unloaded with one call that cancels everything it started.
local loom = require("loom")

local FPS = 60
local errors = {}

loom.configure{
  clock = "manual",                       -- game time, moved by the host
  on_error = function(err, task)          -- a failing script, not a crash
    errors[#errors + 1] = ("%s: %s"):format(task.name, err)
  end,
}

local level = loom.host_group("level 1")
local events_send, events = loom.channel(16)

-- A guard patrols: it moves a little every frame.
level:start_soon(function()
  local x = 0
  local _ <close> = setmetatable({}, { __close = function()
    print(("guard leaves the level at x = %d"):format(x))
  end })
  while true do
    x = x + 1
    if x % 30 == 0 then events_send:send("guard at x = " .. x) end
    loom.next_frame()
  end
end)

-- A torch flickers twice a second, on game time.
level:start_soon(function()
  local lit = true
  while true do
    loom.sleep(0.5)
    lit = not lit
    events_send:send(("torch %s at t = %.2f"):format(lit and "lit" or "out",
      loom.now()))
  end
end)

-- A door script with a bug: it reaches the error hook; the level goes on.
local door = level:create_task(function()
  loom.sleep(0.75)
  error("door script: missing key item", 0)
end)
door.name = "door"

-- The HUD prints what happens in the level.
level:start_soon(function()
  for line in events do print(("[frame %3d] %s"):format(loom.frame(), line)) end
end)

-- The engine's frame loop: update() at 60 FPS for 1.5 s of game time. Game
-- time is frame / FPS, so adding 1/60 ninety times cannot drift.
local frame = 0
local function update()
  loom.step(0, 1000)     -- at most 1000 resumes per frame: no hitch
  frame = frame + 1
  loom.advance(frame / FPS - loom.now())
end

for _ = 1, FPS * 3 // 2 do update() end

print(("after %d frames: %d tasks alive in %s"):format(loom.frame(),
  level:alive(), level.name))
for _, e in ipairs(errors) do print("error hook: " .. e) end

-- Unload the level: one call cancels every task it started and runs their
-- cleanup (`<close>` handlers, finally blocks) before it returns.
print("unloading:", level:close())
print(("%d tasks alive, t = %.2f"):format(level:alive(), loom.now()))
