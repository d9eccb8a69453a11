-- Echo round trips per second on 127.0.0.1: one loom.run holds an echo
-- server and C clients; each client does R round trips of 64 bytes (send 64
-- bytes, then receive until all 64 came back). Prints one line:
--   echo_rate clients=50 round_trips=100000 seconds=... round_trips_per_sec=...
-- Usage: lua5.4 bench/echo_rate.lua [R=2000] [C=50]
local loom = require("loom")

local R = math.tointeger(tonumber(arg and arg[1] or "")) or 2000
local C = math.tointeger(tonumber(arg and arg[2] or "")) or 50
local MSG = string.rep("x", 64)

local function echo(stream)
  while true do
    local ok, data = pcall(stream.receive, stream)
    if not ok then
      if loom.is(data, loom.EndOfStream) then return end
      error(data, 0)
    end
    stream:send(data)
  end
end

local function client(port)
  local s <close> = loom.connect_tcp("127.0.0.1", port)
  for _ = 1, R do
    s:send(MSG)
    local got = 0
    while got < 64 do got = got + #s:receive(64 - got) end
  end
end

local function serve(task_status)
  local listener <close> = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = listener:local_address()
  task_status:started(port)
  listener:serve(echo)
end

local secs
loom.run(function()
  loom.task_group(function(tg)
    local port = tg:start(serve)
    local t0 = loom.now()
    loom.task_group(function(clients)
      for _ = 1, C do clients:start_soon(client, port) end
    end)
    secs = loom.now() - t0
    tg:cancel()
  end)
end)
io.write(("echo_rate clients=%d round_trips=%d seconds=%.3f "
  .. "round_trips_per_sec=%.0f\n"):format(C, R * C, secs, R * C / secs))
