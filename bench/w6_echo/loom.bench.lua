-- W6 TCP echo on 127.0.0.1, server and clients in one loom.run: C clients each
-- do R round trips of 64 bytes (send, then receive until 64 bytes are back).
-- Args: R (round trips per client, 2000), C (clients, 50). N = R * C.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local R, C = B.arg(1, 2000), B.arg(2, 50)
local MSG = string.rep("x", 64)

local function echo(stream)
  while true do
    local ok, data = pcall(stream.receive, stream, 65536)
    if not ok then
      if loom.is(data, loom.EndOfStream) then break end
      error(data, 0)
    end
    stream:send(data)
  end
  stream:close()
end

local function client(port)
  local s = loom.connect_tcp("127.0.0.1", port)
  for _ = 1, R do
    s:send(MSG)
    local got = 0
    while got < 64 do got = got + #s:receive(64 - got) end
  end
  s:close()
end

local secs
loom.run(function()
  local listener = loom.create_tcp_listener{ local_host = "127.0.0.1", local_port = 0 }
  local _, port = listener:local_address()
  loom.task_group(function(tg)
    tg:start_soon(function() listener:serve(echo) end)
    local t0 = B.now()
    loom.task_group(function(clients)
      for _ = 1, C do clients:start_soon(client, port) end
    end)
    secs = B.now() - t0
    tg:cancel()
  end)
  listener:close()
end)
B.report("W6", "loom", R * C, secs)
