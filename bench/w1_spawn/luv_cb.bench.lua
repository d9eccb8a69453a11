-- W1 with plain luv callbacks: a "task" is a callback queued with a 0 ms timer
-- (luv has no other way to defer a call); "join" = the loop running dry.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local uv = require("luv")
local N = B.arg(1, 100000)

local done = 0
local function spawn()
  local timer = uv.new_timer()
  timer:start(0, 0, function()
    timer:close()
    done = done + 1
  end)
end
local t0 = B.now()
for _ = 1, N do spawn() end
uv.run()
local secs = B.now() - t0
assert(done == N)
B.report("W1", "luv-cb", N, secs)
