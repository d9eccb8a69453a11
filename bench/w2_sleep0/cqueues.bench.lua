-- W2 spawn + one sleep(0) + join with cqueues.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local N = B.arg(1, 100000)

local function task() cqueues.sleep(0) end
local t0 = B.now()
local cq = cqueues.new()
for _ = 1, N do cq:wrap(task) end
assert(cq:loop())
local secs = B.now() - t0
B.report("W2", "cqueues", N, secs)
