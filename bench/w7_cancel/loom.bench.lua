-- W7 cancellation: N tasks in one group sleep forever; once all are blocked
-- the body cancels the group. Timed from tg:cancel() to the group's exit.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)

local started = 0
local function sleeper()
  started = started + 1
  loom.sleep_forever()
end

local secs
loom.run(function()
  local t0
  loom.task_group(function(tg)
    for _ = 1, N do tg:start_soon(sleeper) end
    while started < N do loom.sleep(0) end
    t0 = B.now()
    tg:cancel()
  end)
  secs = B.now() - t0
end)
B.report("W7", "loom", N, secs)
