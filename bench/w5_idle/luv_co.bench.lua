-- W5 idle memory on the luv coroutine scheduler (see loom.bench.lua).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local S = require("luvco")
local N = B.arg(1, 100000)

local secs, base_kb, blocked_kb
S.run(function()
  local ev = S.event()
  local started = 0
  local function waiter()
    started = started + 1
    ev:wait()
  end
  base_kb = B.settled_rss_kb()
  local t0 = B.now()
  local paused
  S.group(function(g)
    for _ = 1, N do g:spawn(waiter) end
    while started < N do S.sleep(0) end
    local p0 = B.now()
    blocked_kb = B.settled_rss_kb()
    paused = B.now() - p0
    ev:set()
  end)
  secs = B.now() - t0 - paused
end)
B.report("W5", "luv-co", N, secs, string.format("bytes_per_task=%.0f", (blocked_kb - base_kb) * 1024 / N))
