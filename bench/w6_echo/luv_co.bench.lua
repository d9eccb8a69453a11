-- W6 TCP echo on the luv coroutine scheduler (see loom.bench.lua).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local S = require("luvco")
local R, C = B.arg(1, 2000), B.arg(2, 50)
local MSG = string.rep("x", 64)

local function echo(stream)
  while true do
    local data = stream:receive()
    if not data then break end
    stream:send(data)
  end
  stream:close()
end

local function client(port)
  local s = S.connect_tcp("127.0.0.1", port)
  for _ = 1, R do
    s:send(MSG)
    local got = 0
    while got < 64 do got = got + #s:receive() end
  end
  s:close()
end

local secs
S.run(function()
  S.group(function(server_group)
    local port, stop = S.serve_tcp("127.0.0.1", server_group, echo)
    local t0 = B.now()
    S.group(function(clients)
      for _ = 1, C do clients:spawn(client, port) end
    end)
    secs = B.now() - t0
    stop()
  end)
end)
B.report("W6", "luv-co", R * C, secs)
