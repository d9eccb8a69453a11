-- W7 with cqueues, emulated: cqueues cannot cancel a coroutine from outside,
-- so each "sleeper" waits on a shared cancel condition (no timeout) and the
-- "cancel" is one signal. Timed from the signal until the group is empty.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local N = B.arg(1, 100000)

local cq = cqueues.new()
local cancelled, cancel_cond = false, condition.new()
local started = 0
local function sleeper()
  started = started + 1
  while not cancelled do cancel_cond:wait() end
end
local secs
cq:wrap(function()
  local group = cqueues.new()
  for _ = 1, N do group:wrap(sleeper) end
  cq:wrap(function() assert(group:loop()) end)
  while started < N do cqueues.sleep(0) end
  local t0 = B.now()
  cancelled = true
  cancel_cond:signal()
  while not group:empty() do cqueues.sleep(0) end
  secs = B.now() - t0
end)
assert(cq:loop())
B.report("W7", "cqueues", N, secs)
