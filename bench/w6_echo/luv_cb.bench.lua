-- W6 TCP echo with plain luv callbacks, server and clients on one loop.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local uv = require("luv")
local R, C = B.arg(1, 2000), B.arg(2, 50)
local MSG = string.rep("x", 64)

local server = uv.new_tcp()
assert(server:bind("127.0.0.1", 0))
assert(server:listen(128, function(err)
  assert(not err, err)
  local conn = uv.new_tcp()
  server:accept(conn)
  conn:read_start(function(rerr, data)
    if rerr or not data then conn:close() else conn:write(data) end
  end)
end))
local port = server:getsockname().port

local left = C
local function client()
  local tcp = uv.new_tcp()
  local rounds, got = 0, 0
  tcp:connect("127.0.0.1", port, function(err)
    assert(not err, err)
    tcp:read_start(function(rerr, data)
      assert(not rerr and data, rerr)
      got = got + #data
      if got < 64 then return end
      got = 0
      rounds = rounds + 1
      if rounds < R then
        tcp:write(MSG)
      else
        tcp:close()
        left = left - 1
        if left == 0 then server:close() end
      end
    end)
    tcp:write(MSG)
  end)
end

local t0 = B.now()
for _ = 1, C do client() end
uv.run()
local secs = B.now() - t0
B.report("W6", "luv-cb", R * C, secs)
