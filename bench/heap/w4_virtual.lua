-- W4 on a manual clock: N tasks each sleep 0..100 ms (the shared delays of
-- bench/w4_timers, plus i ns so that deadlines are distinct, as on a real
-- clock); once every task has parked, the clock moves past them all. All N
-- deadlines are in the heap at once whatever the speed of the machine
-- (under valgrind too), then fire in one go; the wall time is the runtime's
-- own cost: spawns, parks, the heap, wakes, finishes, no waiting.
-- Usage: lua5.4 bench/heap/w4_virtual.lua [N]
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)
local delays = B.delays_ms(N)

loom.configure{ clock = "manual" }
local secs
loom.run(function()
  local t0 = B.now()
  loom.task_group(function(tg)
    for i = 1, N do tg:start_soon(loom.sleep, delays[i] / 1000 + i * 1e-9) end
    loom.sleep(0) -- the tasks ran before this task: each sleeps now
    assert(require("loom.core").stats().deadlines == N)
    loom.advance(1)
    loom.checkpoint() -- fires the due deadlines
  end)
  secs = B.now() - t0
end)
B.report("W4-virtual", "loom", N, secs)
