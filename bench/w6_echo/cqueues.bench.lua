-- W6 TCP echo with cqueues sockets (binary, unbuffered mode), server and
-- clients on one controller, stepped until every client is done.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local cqueues = require("cqueues")
local socket = require("cqueues.socket")
local R, C = B.arg(1, 2000), B.arg(2, 50)
local MSG = string.rep("x", 64)

local cq = cqueues.new()
local srv = socket.listen{ host = "127.0.0.1", port = 0 }
assert(srv:listen())
local _, _, port = srv:localname()

local function echo(con)
  con:setmode("bn", "bn")
  while true do
    local data = con:xread(-65536)
    if not data then break end
    assert(con:write(data))
  end
  con:close()
end
cq:wrap(function()
  for con in srv:clients() do cq:wrap(echo, con) end
end)

local left = C
local function client()
  local con = socket.connect("127.0.0.1", port)
  con:setmode("bn", "bn")
  for _ = 1, R do
    assert(con:write(MSG))
    assert(#con:xread(64) == 64)
  end
  con:close()
  left = left - 1
end

local t0 = B.now()
for _ = 1, C do cq:wrap(client) end
while left > 0 do assert(cq:step()) end
local secs = B.now() - t0
B.report("W6", "cqueues", R * C, secs)
