-- W4 timers with plain luv callbacks: N one-shot uv timers.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local uv = require("luv")
local N = B.arg(1, 100000)
local delays, max_ms = B.delays_ms(N)

local fired = 0
local t0 = B.now()
uv.update_time() -- delays count from t0
for i = 1, N do
  local timer = uv.new_timer()
  timer:start(delays[i], 0, function()
    timer:close()
    fired = fired + 1
  end)
end
uv.run()
local secs = B.now() - t0
assert(fired == N)
B.report("W4", "luv-cb", N, secs, string.format("overhead_ms=%.1f", (secs - max_ms / 1000) * 1000))
