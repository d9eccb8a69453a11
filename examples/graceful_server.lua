-- A TCP server that shuts down gracefully on SIGTERM: it stops accepting,
-- lets the requests in progress finish (drains), then exits. Here the
-- program sends SIGTERM to itself while a client waits for a slow reply;
-- run it as a service and `kill -TERM <pid>` does the same.
local loom = require("loom")

local function pid()
  local f = io.open("/proc/self/stat")
  local n = f:read("n")
  f:close()
  return n
end

-- One request: a line in, a reply after a (slow) computation.
local function handle(stream, active)
  local b = loom.buffered(stream)
  local line = b:receive_until("\n", 1024)
  active.n = active.n + 1
  loom.sleep(0.2)                     -- the slow part
  b:send(line:upper() .. "\n")
  active.n = active.n - 1
end

loom.run(function()
  local listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = listener:local_address()
  local signals <close> = loom.open_signal_receiver("SIGTERM")
  local active = { n = 0 }
  loom.task_group(function(tg)
    -- The connections' tasks live in tg: closing the listener stops the
    -- accept loop, tg still waits for every handler to finish.
    tg:start_soon(function()
      local ok, e = pcall(listener.serve, listener, function(s)
        handle(s, active)
      end, tg)
      if not loom.is(e, loom.ClosedResourceError) then error(e, 0) end
      assert(not ok)
      print("server: no longer accepting")
    end)
    tg:start_soon(function()
      print("server: got " .. signals:receive() .. ", draining "
        .. active.n .. " request(s)")
      listener:close()
    end)
    -- a client with a slow request in flight when SIGTERM arrives
    local c <close> = loom.buffered(loom.connect_tcp("127.0.0.1", port))
    c:send("hello\n")
    loom.sleep(0.05)
    loom.run_process({ "kill", "-TERM", tostring(pid()) })
    print("client: reply " .. c:receive_until("\n", 100))
  end)
  print("server: stopped cleanly")
end)
