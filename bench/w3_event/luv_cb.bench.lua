-- W3 ping-pong with plain luv callbacks: there are no tasks to switch, so a
-- hop is "the loop calls the other side back": each side owns a uv timer and
-- a hop starts the peer's timer with a 0 ms timeout. M round trips = 2M hops.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local uv = require("luv")
local M = B.arg(1, 1000000)

local ta, tb = uv.new_timer(), uv.new_timer()
local rounds = 0
local a, b
function a()
  rounds = rounds + 1
  if rounds > M then ta:close(); tb:close(); return end
  tb:start(0, 0, b)
end
function b() ta:start(0, 0, a) end

local t0 = B.now()
ta:start(0, 0, a)
uv.run()
local secs = B.now() - t0
B.report("W3-event", "luv-cb", M, secs, string.format("ns_per_switch=%.1f", secs * 1e9 / (2 * M)))
