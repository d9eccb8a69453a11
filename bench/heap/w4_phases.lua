-- W4's phases: N tasks each sleep 0..100 ms (the shared delays of
-- bench/w4_timers), timed from the first spawn: the spawn loop, the first
-- resume of the last task (every task has then parked once), the last wake
-- and loom.run's return. Usage: lua5.4 bench/heap/w4_phases.lua [N]
-- (LUA_PATH / LUA_CPATH select the loom build, as for the loom.bench.lua
-- scripts).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)
local delays, max_ms = B.delays_ms(N)

local t0, t1, t2, last = 0, 0, 0, 0
local started = 0
local function sleeper(d)
  started = started + 1
  if started == N then t2 = B.now() end
  loom.sleep(d)
  last = B.now()
end

loom.run(function()
  t0 = B.now()
  loom.task_group(function(tg)
    for i = 1, N do tg:start_soon(sleeper, delays[i] / 1000) end
    t1 = B.now()
  end)
end)
local t3 = B.now()
local function ms(t) return (t - t0) * 1000 end
print(string.format("W4 phases N=%d: spawn loop %.1f ms; all parked at "
  .. "%.1f ms; last wake at %.1f ms; run returned at %.1f ms (longest "
  .. "delay %d ms)", N, ms(t1), ms(t2), ms(last), ms(t3), max_ms))
