-- A small concurrent HTTP/1.0 fetcher against a local server that this
-- script starts itself (127.0.0.1, port chosen by the kernel). The server
-- answers slower for earlier paths, so the fetches finish in reverse order;
-- loom.gather still returns the results in request order.
local loom = require("loom")

local PAGES = {
  ["/"] = "welcome\n",
  ["/tasks"] = "task groups, cancel scopes\n",
  ["/net"] = "streams, listeners, getaddrinfo\n",
}
local PATHS = { "/", "/tasks", "/net", "/missing" }

local function respond(stream)
  local b = loom.buffered(stream)
  local method, path = b:receive_until("\r\n", 8192):match("^(%u+) (%S+)")
  repeat local header = b:receive_until("\r\n", 8192) until header == ""
  for i, p in ipairs(PATHS) do
    if p == path then loom.sleep(0.01 * (#PATHS - i)) end
  end
  local body, status = PAGES[path], "200 OK"
  if method ~= "GET" then body, status = "", "405 Method Not Allowed"
  elseif body == nil then body, status = "no such page\n", "404 Not Found" end
  b:send(("HTTP/1.0 %s\r\nContent-Type: text/plain\r\nContent-Length: %d"
    .. "\r\n\r\n%s"):format(status, #body, body))
end  -- serve closes the stream when the handler returns: HTTP/1.0 style

local function server(task_status)
  local listener <close> = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = listener:local_address()
  task_status:started(port)
  listener:serve(respond)
end

local function fetch(port, path)
  local b <close> = loom.buffered(loom.connect_tcp("127.0.0.1", port))
  b:send(("GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"):format(path))
  local status = b:receive_until("\r\n", 8192):match("^HTTP/1%.%d (.*)$")
  local headers = {}
  while true do
    local line = b:receive_until("\r\n", 8192)
    if line == "" then break end
    local k, v = line:match("^([^:]+):%s*(.*)$")
    headers[k:lower()] = v
  end
  local body = b:receive_exactly(tonumber(headers["content-length"]))
  return { path = path, status = status, body = body }
end

loom.run(function()
  loom.task_group(function(tg)
    local port = tg:start(server)
    local jobs = {}
    for i, path in ipairs(PATHS) do
      jobs[i] = function() return fetch(port, path) end
    end
    for _, r in ipairs(loom.gather(jobs)) do
      print(("GET %-9s %-16s %s"):format(r.path, r.status,
        (r.body:gsub("\n$", ""))))
    end
    tg:cancel()
  end)
end)
