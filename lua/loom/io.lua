-- loom.io: installs the I/O beyond TCP into the loom table: files (fs.lua),
-- UDP (udp.lua), TLS (tls.lua), and fd readiness for other libraries'
-- sockets (poll.c; the argument handling is here).

local M = {}

-- An fd from an integer, an integral float (LuaSocket's getfd() returns
-- 4.0 in Lua 5.4) or an object with a getfd() method.
local function to_fd(v, fname)
  local t = type(v)
  if (t == "table" or t == "userdata") then
    local ok, getfd = pcall(function() return v.getfd end)
    if ok and getfd ~= nil then v = getfd(v) end
  end
  local fd = math.type(v) == "float" and math.tointeger(v) or v
  if math.type(fd) ~= "integer" then
    error(("bad argument #1 to '%s' (integer fd or object with getfd() "
      .. "expected, got %s)"):format(fname, type(v) == "number"
      and tostring(v) or (v == nil and "no value" or type(v))), 3)
  end
  if fd < 0 then
    error(("bad argument #1 to '%s' (fd must not be negative, got %d; "
      .. "a closed socket's getfd() returns -1)"):format(fname, fd), 3)
  end
  return fd
end

function M.install(loom, core)
  require("loom.fs").install(loom, core)
  require("loom.udp").install(loom, core)
  require("loom.tls").install(loom, core)

  local poll_wait = core.poll_wait

  --- loom.wait_readable(fd): until fd is readable (or hung up).
  function loom.wait_readable(fd)
    return poll_wait(to_fd(fd, "wait_readable"), false)
  end

  --- loom.wait_writable(fd): until fd is writable.
  function loom.wait_writable(fd)
    return poll_wait(to_fd(fd, "wait_writable"), true)
  end
end

return M
