-- An echo service on a Unix domain socket: the listener removes its
-- socket file when it closes; clients connect by path.
local loom = require("loom")

local path = os.tmpname()
os.remove(path)                       -- a fresh name for the socket
path = path .. ".sock"

local function echo(stream)
  local b = loom.buffered(stream)
  while true do
    local ok, line = pcall(b.receive_until, b, "\n", 4096)
    if not ok then return end         -- the client closed its side
    b:send("echo: " .. line .. "\n")
  end
end

loom.run(function()
  loom.task_group(function(tg)
    local listener = loom.create_unix_listener{ path = path, mode = 384 }
    tg:start_soon(function()
      local l <close> = listener
      l:serve(echo)
    end)
    for _, who in ipairs({ "alice", "bob" }) do
      local c <close> = loom.buffered(loom.connect_unix(path))
      c:send("hello from " .. who .. "\n")
      c:send("bye\n")
      print(c:receive_until("\n", 100))
      print(c:receive_until("\n", 100))
    end
    tg.cancel_scope:cancel()
  end)
  local f = io.open(path)
  print("socket file removed: " .. tostring(f == nil))
end)
