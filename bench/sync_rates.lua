-- Synchronisation hot paths, one line each:
--   channel ping-pong: two tasks pass a token back and forth through
--     rendezvous channels (size 0, one per direction, as bench/w3_channel);
--     a round trip is one item each way, i.e. two hops;
--   event wake: two tasks wake each other through events, a fresh event for
--     every hop (as bench/w3_event); a round trip is two wakes.
-- Usage: lua5.4 bench/sync_rates.lua [round_trips [repeats]]
-- (default 1000000 round trips, best of 3). Measure a Release build:
--   cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
--   cmake --build build-release
--   LUA_CPATH="build-release/?.so;;" lua5.4 bench/sync_rates.lua
local root = (arg and arg[0] or ""):match("^(.*)/bench/[^/]*$") or "."
package.path = package.path .. ";" .. root .. "/lua/?.lua;" .. root
  .. "/lua/?/init.lua"
package.cpath = package.cpath .. ";" .. root .. "/build/?.so"
local loom = require("loom")

local M = math.tointeger(tonumber(arg and arg[1]) or 1000000)
local REPEATS = math.tointeger(tonumber(arg and arg[2]) or 3)

local function channel_ping_pong()
  local to_b_send, to_b_recv = loom.channel(0)
  local to_a_send, to_a_recv = loom.channel(0)
  local t0 = loom.now()
  loom.task_group(function(tg)
    tg:start_soon(function()
      for _ = 1, M do to_a_send:send(to_b_recv:receive()) end
    end)
    tg:start_soon(function()
      for i = 1, M do
        to_b_send:send(i)
        to_a_recv:receive()
      end
    end)
  end)
  return loom.now() - t0
end

local function event_wake()
  local wake_a, wake_b = nil, loom.event()
  local t0 = loom.now()
  loom.task_group(function(tg)
    tg:start_soon(function()
      for _ = 1, M do
        wake_b:wait()
        wake_b = loom.event()
        wake_a:set()
      end
    end)
    tg:start_soon(function()
      for _ = 1, M do
        wake_a = loom.event()
        wake_b:set()
        wake_a:wait()
      end
    end)
  end)
  return loom.now() - t0
end

local function best(fn)
  local secs = math.huge
  for _ = 1, REPEATS do
    collectgarbage()
    secs = math.min(secs, loom.run(fn))
  end
  return secs
end

local ch = best(channel_ping_pong)
print(("channel ping-pong: %d round trips in %.3f s = %.0f round trips/s "
  .. "(%.0f ns per hop, best of %d)"):format(M, ch, M / ch,
    ch * 1e9 / (2 * M), REPEATS))
local ev = best(event_wake)
print(("event wake: %d wakes in %.3f s = %.0f wakes/s (%.0f ns per switch, "
  .. "fresh event per hop, best of %d)"):format(2 * M, ev, 2 * M / ev,
    ev * 1e9 / (2 * M), REPEATS))
