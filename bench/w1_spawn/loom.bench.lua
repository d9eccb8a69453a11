-- W1 spawn + join: N trivial tasks in one task group.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)

local function noop() end
local secs
loom.run(function()
  local t0 = B.now()
  loom.task_group(function(tg)
    for _ = 1, N do tg:start_soon(noop) end
  end)
  secs = B.now() - t0
end)
B.report("W1", "loom", N, secs)
