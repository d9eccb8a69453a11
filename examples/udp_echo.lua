-- A UDP echo service and a client, in one process. The service answers
-- each datagram to its sender; the client uses a connected socket, so it
-- only hears from the service. Datagrams keep their boundaries: an empty
-- one arrives as "".
local loom = require("loom")

local function echo_service(task_status)
  local sock <close> = loom.create_udp_socket{ local_host = "127.0.0.1" }
  local _, port = sock:local_address()
  task_status:started(port)
  while true do
    local data, host, from_port = sock:receive_from()
    sock:send_to(data:upper(), host, from_port)
  end
end

loom.run(function()
  loom.task_group(function(tg)
    local port = tg:start(echo_service)
    print("UDP echo service is listening on 127.0.0.1")
    local client <close> = loom.create_connected_udp_socket{
      remote_host = "127.0.0.1", remote_port = port }
    for _, msg in ipairs({ "hello", "", "datagrams keep their boundaries" }) do
      client:send(msg)
      print(("sent %q, got back %q"):format(msg, client:receive()))
    end
    local big = ("x"):rep(65507)
    client:send(big)
    print(("sent %d bytes, got back %d"):format(#big, #client:receive()))
    local ok, err = pcall(client.send, client, big .. "x")
    print("a bigger datagram:", ok, err.code)
    tg:cancel()
  end)
  print("service stopped")
end)
