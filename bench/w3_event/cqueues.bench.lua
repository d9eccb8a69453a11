-- W3 ping-pong through events with cqueues. cqueues has no event; the usual
-- stand-in is a condition variable plus a flag (conditions are edge-triggered).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local M = B.arg(1, 1000000)

local function event() return { flag = false, cond = condition.new() } end
local function set(ev) ev.flag = true; ev.cond:signal() end
local function wait(ev) if not ev.flag then ev.cond:wait() end end

local wake_a, wake_b = nil, event()
local function ping()
  for _ = 1, M do
    wake_a = event()
    set(wake_b)
    wait(wake_a)
  end
end
local function pong()
  for _ = 1, M do
    wait(wake_b)
    wake_b = event()
    set(wake_a)
  end
end

local t0 = B.now()
local cq = cqueues.new()
cq:wrap(pong)
cq:wrap(ping)
assert(cq:loop())
local secs = B.now() - t0
B.report("W3-event", "cqueues", M, secs, string.format("ns_per_switch=%.1f", secs * 1e9 / (2 * M)))
