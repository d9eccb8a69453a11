-- An HTTPS GET with loom.connect_tcp{tls = ...}: TLS over TCP, the
-- certificate verified (against the system store, or CAFILE) and the host
-- name checked.
--
--   lua5.4 examples/https_get.lua URL [CAFILE]
--   LOOM_HTTPS_URL=... LOOM_HTTPS_CAFILE=... lua5.4 examples/https_get.lua
--
-- Its test points it at a local server with a throwaway CA.
local loom = require("loom")

local url = arg[1] or os.getenv("LOOM_HTTPS_URL")
local cafile = arg[2] or os.getenv("LOOM_HTTPS_CAFILE")
if url == nil then
  io.stderr:write("usage: lua5.4 examples/https_get.lua URL [CAFILE]\n")
  os.exit(2)
end

local host, port, path = url:match("^https://([^/:]+):?(%d*)(/?.*)$")
assert(host, "not an https URL: " .. url)
port = tonumber(port) or 443
if path == "" then path = "/" end

loom.run(function()
  local stream <close> = loom.connect_tcp(host, port,
    { tls = { cafile = cafile, alpn = { "http/1.1" } } })
  local cert = stream:peer_certificate()
  print("connected with " .. stream:tls_version() .. " to " .. cert.subject
    .. ", issued by " .. cert.issuer)
  stream:send(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n")
    :format(path, host))
  local b = loom.buffered(stream)
  print(b:receive_until("\r\n", 1000))           -- the status line
  local length
  while true do
    local line = b:receive_until("\r\n", 8192)
    if line == "" then break end
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name and name:lower() == "content-length" then
      length = tonumber(value)
    end
  end
  -- A length tells where the body ends; without one, it ends with the
  -- connection.
  if length then
    io.write(b:receive_exactly(length))
  else
    while true do
      local ok, chunk = pcall(b.receive, b)
      if not ok then break end
      io.write(chunk)
    end
  end
end)
