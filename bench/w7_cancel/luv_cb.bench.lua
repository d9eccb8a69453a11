-- W7 with plain luv callbacks: no tasks and no cancellation, so (as in the C
-- floor) N pending timers stand for the sleepers, and "cancel" closes them all.
-- Timed from the first close until the loop has run every close callback.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local uv = require("luv")
local N = B.arg(1, 100000)

local timers = {}
for i = 1, N do
  local t = uv.new_timer()
  t:start(2 ^ 40, 0, function() error("fired") end)
  timers[i] = t
end
uv.run("nowait")
local closed = 0
local function on_close() closed = closed + 1 end
local t0 = B.now()
for i = 1, N do timers[i]:close(on_close) end
uv.run()
local secs = B.now() - t0
assert(closed == N)
B.report("W7", "luv-cb", N, secs)
