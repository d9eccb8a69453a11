-- W4 timers on the luv coroutine scheduler (one uv timer per sleep).
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local S = require("luvco")
local N = B.arg(1, 100000)
local delays, max_ms = B.delays_ms(N)

local secs
S.run(function()
  local t0 = B.now()
  S.group(function(g)
    for i = 1, N do g:spawn(S.sleep, delays[i] / 1000) end
  end)
  secs = B.now() - t0
end)
B.report("W4", "luv-co", N, secs, string.format("overhead_ms=%.1f", (secs - max_ms / 1000) * 1000))
