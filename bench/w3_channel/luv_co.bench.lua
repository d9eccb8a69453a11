-- W3 ping-pong through rendezvous channels on the luv coroutine scheduler.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local S = require("luvco")
local M = B.arg(1, 1000000)

local to_b, to_a = S.channel(), S.channel()
local function ping()
  for i = 1, M do
    to_b:send(i)
    to_a:receive()
  end
end
local function pong()
  for _ = 1, M do
    to_a:send(to_b:receive())
  end
end

local secs
S.run(function()
  local t0 = B.now()
  S.group(function(g)
    g:spawn(pong)
    g:spawn(ping)
  end)
  secs = B.now() - t0
end)
B.report("W3-channel", "luv-co", M, secs, string.format("ns_per_switch=%.1f", secs * 1e9 / (2 * M)))
