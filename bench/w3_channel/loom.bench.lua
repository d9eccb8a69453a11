-- W3 ping-pong through rendezvous channels (max_buffer_size 0): A sends the
-- token on one channel, B sends it back on another. M round trips = 2M hops.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local M = B.arg(1, 1000000)

local to_b_send, to_b_recv = loom.channel(0)
local to_a_send, to_a_recv = loom.channel(0)
local function ping()
  for i = 1, M do
    to_b_send:send(i)
    to_a_recv:receive()
  end
end
local function pong()
  for _ = 1, M do
    to_a_send:send(to_b_recv:receive())
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
B.report("W3-channel", "loom", M, secs, string.format("ns_per_switch=%.1f", secs * 1e9 / (2 * M)))
