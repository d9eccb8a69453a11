-- LuaSocket's non-blocking sockets under loom: loom.wait_readable and
-- loom.wait_writable park the task until the socket is ready, so code
-- written for LuaSocket runs next to loom tasks without blocking them.
local loom = require("loom")
local socket = require("socket")

-- A LuaSocket line server: one client, answers each line reversed.
local function server(task_status)
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(0)
  local _, port = srv:getsockname()
  task_status:started(tonumber(port))
  loom.wait_readable(srv)              -- an object with getfd()
  local conn = assert(srv:accept())
  srv:close()
  conn:settimeout(0)
  while true do
    loom.wait_readable(conn)
    local line, err = conn:receive("*l")
    if err == "closed" then break end
    if line then
      loom.wait_writable(conn:getfd())  -- or the fd itself
      conn:send(line:reverse() .. "\n")
    end
  end
  conn:close()
  print("server: client went away")
end

loom.run(function()
  loom.task_group(function(tg)
    local port = tg:start(server)
    -- A loom TCP client talks to the LuaSocket server.
    local stream <close> = loom.buffered(loom.connect_tcp("127.0.0.1", port))
    for _, word in ipairs({ "loom", "luasocket", "readiness" }) do
      stream:send(word .. "\n")
      print(("client: %s -> %s"):format(word,
        stream:receive_until("\n", 100)))
    end
    stream:close()
  end)
  print("done")
end)
