-- W4 timers: N tasks each sleep 0..100 ms (the shared minstd delays, seed 42).
-- Reports the wall time and its overhead over the longest delay (ideal).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)
local delays, max_ms = B.delays_ms(N)

local secs
loom.run(function()
  local t0 = B.now()
  loom.task_group(function(tg)
    for i = 1, N do tg:start_soon(loom.sleep, delays[i] / 1000) end
  end)
  secs = B.now() - t0
end)
B.report("W4", "loom", N, secs, string.format("overhead_ms=%.1f", (secs - max_ms / 1000) * 1000))
