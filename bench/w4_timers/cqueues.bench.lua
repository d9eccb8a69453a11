-- W4 timers with cqueues: N coroutines each cqueues.sleep().
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local N = B.arg(1, 100000)
local delays, max_ms = B.delays_ms(N)

local t0 = B.now()
local cq = cqueues.new()
for i = 1, N do
  local d = delays[i] / 1000
  cq:wrap(function() cqueues.sleep(d) end)
end
assert(cq:loop())
local secs = B.now() - t0
B.report("W4", "cqueues", N, secs, string.format("overhead_ms=%.1f", (secs - max_ms / 1000) * 1000))
