-- UDP echo on 127.0.0.1: one server socket, C connected clients each doing
-- N/C round trips of 64 bytes. Args: N (1e5), C (10). Prints round trips/s.
local loom = require("loom")
local N, C = tonumber(arg[1] or 100000), tonumber(arg[2] or 10)
local MSG = ("x"):rep(64)
loom.run(function()
  local srv = loom.create_udp_socket{ local_host = "127.0.0.1" }
  local _, port = srv:local_address()
  local t0
  loom.task_group(function(tg)
    tg:start_soon(function()
      while true do
        local d, h, p = srv:receive_from()
        srv:send_to(d, h, p)
      end
    end)
    t0 = loom.now()
    loom.task_group(function(clients)
      for _ = 1, C do
        clients:start_soon(function()
          local c <close> = loom.create_connected_udp_socket{
            remote_host = "127.0.0.1", remote_port = port }
          for _ = 1, N // C do
            c:send(MSG)
            c:receive()
          end
        end)
      end
    end)
    tg:cancel()
  end)
  local dt = loom.now() - t0
  srv:close()
  print(("loom udp_echo %d round trips %.3f s %.0f rt/s"):format(N, dt,
    N / dt))
end)
