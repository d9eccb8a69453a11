-- The host-driven runtime's costs, as an engine sees them:
--   1. an idle loom.step() (nothing ready, nothing due);
--   2. 10,000 "NPC" tasks each doing loom.next_frame() in a loop, driven for
--      600 frames, against what engines write by hand today: a Lua array of
--      coroutines, each resumed once per frame by the host; plus the bytes
--      loom.step allocates per frame in steady state (GC stopped, Lua heap
--      before and after);
--   3. a 60 FPS level (NPCs on next_frame, sleeps, a channel) stepped with a
--      2 ms budget: the distribution of step times.
-- Prints a markdown report. Run from the repo root (make bench-embed):
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/embed/step_bench.lua
local loom = require("loom")

local NPCS = tonumber(arg and arg[1]) or 10000
local FRAMES = tonumber(arg and arg[2]) or 600
local clock = os.clock

local function fmt_ns(s) return ("%.0f ns"):format(s * 1e9) end
local function fmt_us(s) return ("%.1f µs"):format(s * 1e6) end

local out = {}
local function say(s) out[#out + 1] = s end

-- 1. idle step ------------------------------------------------------------

local idle = loom.host_group("idle")
idle:start_soon(function() loom.sleep(3600) end)   -- a deadline, not due
loom.step()
local step = loom.step
local best = math.huge
for _ = 1, 5 do
  local n = 1000000
  local t0 = clock()
  for _ = 1, n do step() end
  best = math.min(best, (clock() - t0) / n)
end
idle:close()
local idle_cost = best

-- 2. NPCs: loom tasks vs a hand-written coroutine array ---------------------

local function bench_loom()
  local hg = loom.host_group("npcs")
  local moved = 0
  for _ = 1, NPCS do
    hg:start_soon(function()
      local next_frame = loom.next_frame
      while true do
        moved = moved + 1
        next_frame()
      end
    end)
  end
  for _ = 1, 10 do step() end     -- warm up: every task started and parked
  collectgarbage("collect")
  collectgarbage("stop")
  local kb0 = collectgarbage("count")
  local t0 = clock()
  for _ = 1, FRAMES do step() end
  local dt = clock() - t0
  local kb1 = collectgarbage("count")
  collectgarbage("restart")
  hg:close()
  assert(moved == NPCS * (FRAMES + 10))
  return dt / FRAMES, (kb1 - kb0) * 1024 / FRAMES
end

local function bench_coroutines()
  local cos = {}
  local moved = 0
  local yield = coroutine.yield
  for i = 1, NPCS do
    cos[i] = coroutine.create(function()
      while true do
        moved = moved + 1
        yield()
      end
    end)
  end
  local resume = coroutine.resume
  local function frame()
    for i = 1, #cos do resume(cos[i]) end
  end
  for _ = 1, 10 do frame() end
  collectgarbage("collect")
  collectgarbage("stop")
  local kb0 = collectgarbage("count")
  local t0 = clock()
  for _ = 1, FRAMES do frame() end
  local dt = clock() - t0
  local kb1 = collectgarbage("count")
  collectgarbage("restart")
  assert(moved == NPCS * (FRAMES + 10))
  return dt / FRAMES, (kb1 - kb0) * 1024 / FRAMES
end

local loom_frame, loom_bytes, co_frame, co_bytes = math.huge, 0, math.huge, 0
for _ = 1, 3 do
  local f, b = bench_loom()
  if f < loom_frame then loom_frame, loom_bytes = f, b end
  f, b = bench_coroutines()
  if f < co_frame then co_frame, co_bytes = f, b end
end

-- 3. a 60 FPS level with a 2 ms budget ---------------------------------------

-- The clock is real here (configure is per state and this state already
-- ran tasks): NPCs sleep in real time, the frame loop runs unthrottled.
local level = loom.host_group("level")
local send, recv = loom.channel(64)
for i = 1, 2000 do
  level:start_soon(function()
    while true do
      if i % 10 == 0 then loom.sleep(0.001 * (i % 7)) end
      if i % 5 == 0 then send:send(i) end
      loom.next_frame()
    end
  end)
end
for _ = 1, 4 do
  level:start_soon(function() while true do recv:receive() end end)
end
local times = {}
for f = 1, 600 do
  local t0 = clock()
  step(0.002)
  times[f] = clock() - t0
end
level:close()
table.sort(times)
local p50 = times[#times // 2]
local p99 = times[math.ceil(#times * 0.99)]
local max = times[#times]

say("## Embedding: the host-driven runtime (loom.step)")
say("")
say(("Measured by `make bench-embed` (bench/embed/step_bench.lua, the "
  .. "last three rows bench/embed/step_c.c) on %s, "
  .. "Lua 5.4, a RelWithDebInfo build; CPU time (os.clock). The machine "
  .. "was shared with other jobs while measuring: treat the numbers as "
  .. "indicative."):format(os.date("!%Y-%m-%d")))
say("")
say("| measure | result | target |")
say("|---|---|---|")
say(("| idle `loom.step()` (nothing ready or due) | %s per call | ≤ 1 µs |")
  :format(fmt_ns(idle_cost)))
say(("| %d NPC tasks on `loom.next_frame()`, per frame | %s (%s per task) "
  .. "| |"):format(NPCS, fmt_us(loom_frame), fmt_ns(loom_frame / NPCS)))
say(("| the same with a hand-written array of %d coroutines | %s (%s per "
  .. "coroutine) | |"):format(NPCS, fmt_us(co_frame), fmt_ns(co_frame / NPCS)))
say(("| ratio loom / hand-written | %.2f× | ≤ 1.5× |")
  :format(loom_frame / co_frame))
say(("| bytes allocated per frame by `loom.step` in steady state (%d frames) "
  .. "| %.0f | 0 |"):format(FRAMES, loom_bytes))
say(("| bytes allocated per frame by the coroutine array | %.0f | |")
  :format(co_bytes))
say(("| 60 FPS level, 2,000 NPCs + sleeps + a channel, `step(0.002)`: "
  .. "median / p99 / max step time | %s / %s / %s | max ≈ budget + one "
  .. "resume |"):format(fmt_us(p50), fmt_us(p99), fmt_us(max)))
print(table.concat(out, "\n"))
