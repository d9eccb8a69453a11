-- TLS echo on 127.0.0.1: a tls_listener serving C clients, each doing R
-- round trips of 64 bytes over connect_tcp{tls=}. Args: R (1000), C (50),
-- CERTDIR (with ca.pem, server.pem, server.key). Prints round trips/s
-- (handshakes included in the time, as for the peers).
local loom = require("loom")
local R, C = tonumber(arg[1] or 1000), tonumber(arg[2] or 50)
local dir = assert(arg[3], "usage: tls_echo.lua R C CERTDIR")
local MSG = ("x"):rep(64)

local function handle(s)
  while true do
    local ok, d = pcall(s.receive, s)
    if not ok then return end
    s:send(d)
  end
end

loom.run(function()
  local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = raw:local_address()
  local l = loom.tls_listener(raw, { certfile = dir .. "/server.pem",
    keyfile = dir .. "/server.key" })
  local t0
  loom.task_group(function(tg)
    tg:start_soon(function() l:serve(handle) end)
    t0 = loom.now()
    loom.task_group(function(clients)
      for _ = 1, C do
        clients:start_soon(function()
          local s <close> = loom.connect_tcp("127.0.0.1", port, { tls = {
            cafile = dir .. "/ca.pem" } })
          for _ = 1, R do
            s:send(MSG)
            local got = 0
            while got < 64 do got = got + #s:receive() end
          end
        end)
      end
    end)
    tg:cancel()
  end)
  local dt = loom.now() - t0
  l:close()
  print(("loom tls_echo %d round trips %.3f s %.0f rt/s"):format(R * C, dt,
    R * C / dt))
end)
