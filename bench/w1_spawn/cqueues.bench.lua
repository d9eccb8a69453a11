-- W1 spawn + join with cqueues: N coroutines wrapped in one controller,
-- which is run until every one has finished.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local N = B.arg(1, 100000)

local function noop() end
local t0 = B.now()
local cq = cqueues.new()
for _ = 1, N do cq:wrap(noop) end
assert(cq:loop())
local secs = B.now() - t0
B.report("W1", "cqueues", N, secs)
