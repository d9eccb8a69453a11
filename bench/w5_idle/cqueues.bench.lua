-- W5 idle memory with cqueues: N coroutines blocked on one condition
-- (an event = condition + flag). See loom.bench.lua for the method.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local N = B.arg(1, 100000)

local cq = cqueues.new()
local flag, cond = false, condition.new()
local started = 0
local function waiter()
  started = started + 1
  if not flag then cond:wait() end
end
local secs, base_kb, blocked_kb
cq:wrap(function()
  base_kb = B.settled_rss_kb()
  local t0 = B.now()
  local inner = cqueues.new() -- the "group": its own controller, run below
  for _ = 1, N do inner:wrap(waiter) end
  cq:wrap(function() assert(inner:loop()) end)
  while started < N do cqueues.sleep(0) end
  local p0 = B.now()
  blocked_kb = B.settled_rss_kb()
  local paused = B.now() - p0
  flag = true
  cond:signal()
  while not inner:empty() do cqueues.sleep(0) end
  secs = B.now() - t0 - paused
end)
assert(cq:loop())
B.report("W5", "cqueues", N, secs, string.format("bytes_per_task=%.0f", (blocked_kb - base_kb) * 1024 / N))
