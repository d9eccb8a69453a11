-- W5 idle memory: N tasks blocked on one event. bytes_per_task is the growth
-- of resident memory (VmRSS, after a full GC) from before spawning to when all
-- N are blocked, divided by N. seconds = spawn + block + wake + join, without
-- the two measurements.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)

local secs, base_kb, blocked_kb
loom.run(function()
  local ev = loom.event()
  local started = 0
  local function waiter()
    started = started + 1
    ev:wait()
  end
  base_kb = B.settled_rss_kb()
  local t0 = B.now()
  local paused
  loom.task_group(function(tg)
    for _ = 1, N do tg:start_soon(waiter) end
    while started < N do loom.sleep(0) end
    local p0 = B.now()
    blocked_kb = B.settled_rss_kb()
    paused = B.now() - p0
    ev:set()
  end)
  secs = B.now() - t0 - paused
end)
B.report("W5", "loom", N, secs, string.format("bytes_per_task=%.0f", (blocked_kb - base_kb) * 1024 / N))
