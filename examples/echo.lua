-- AnyIO's tg:start() example, in loom: an echo service binds a listener on
-- port 0, reports the port the kernel chose through task_status:started(),
-- then serves. tg:start() returns only once the service is listening, so the
-- client can connect at once. Cancelling the group stops the service.
local loom = require("loom")

-- One connection: send every chunk back until the client closes its side.
local function handle(stream)
  while true do
    local ok, data = pcall(stream.receive, stream)
    if not ok then
      if loom.is(data, loom.EndOfStream) then return end
      error(data, 0)
    end
    stream:send(data)
  end
end

local function echo_service(task_status, host)
  local listener <close> = loom.create_tcp_listener{
    local_host = host, local_port = 0 }
  local _, port = listener:local_address()
  task_status:started(port)
  listener:serve(handle)   -- until cancelled; each handler in its own task
end

loom.run(function()
  loom.task_group(function(tg)
    local port = tg:start(echo_service, "127.0.0.1")
    print("echo service is listening on 127.0.0.1")
    local stream <close> = loom.buffered(loom.connect_tcp("127.0.0.1", port))
    for _, line in ipairs({ "hello", "structured", "concurrency" }) do
      stream:send(line)
      -- TCP is a byte stream: the echo may come back in several pieces.
      print(("sent %s, got back %s"):format(line,
        stream:receive_exactly(#line)))
    end
    stream:send_eof()
    tg:cancel()
  end)
  print("service stopped")
end)
