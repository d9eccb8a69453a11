-- W3 ping-pong through events: tasks A and B hand a token back and forth,
-- each hop through a fresh event. M round trips = 2M switches.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local M = B.arg(1, 1000000)

local wake_a, wake_b = nil, loom.event() -- the event each side waits on next
local function ping()
  for _ = 1, M do
    wake_a = loom.event() -- fresh event before handing over the token
    wake_b:set()
    wake_a:wait()
  end
end
local function pong()
  for _ = 1, M do
    wake_b:wait()
    wake_b = loom.event()
    wake_a:set()
  end
end

local secs
loom.run(function()
  local t0 = B.now()
  loom.task_group(function(tg)
    tg:start_soon(pong)
    tg:start_soon(ping)
  end)
  secs = B.now() - t0
end)
B.report("W3-event", "loom", M, secs, string.format("ns_per_switch=%.1f", secs * 1e9 / (2 * M)))
