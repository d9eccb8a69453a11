-- W1 spawn + join on the small luv coroutine scheduler (lib/luvco.lua).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local S = require("luvco")
local N = B.arg(1, 100000)

local function noop() end
local secs
S.run(function()
  local t0 = B.now()
  S.group(function(g)
    for _ = 1, N do g:spawn(noop) end
  end)
  secs = B.now() - t0
end)
B.report("W1", "luv-co", N, secs)
