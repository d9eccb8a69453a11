-- W7 cancellation on the luv coroutine scheduler: g:cancel() wakes every
-- blocked task with an error. Timed from g:cancel() to the group's exit.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local S = require("luvco")
local N = B.arg(1, 100000)

local started = 0
local function sleeper()
  started = started + 1
  S.sleep_forever()
end

local secs
S.run(function()
  local t0
  S.group(function(g)
    for _ = 1, N do g:spawn(sleeper) end
    while started < N do S.sleep(0) end
    t0 = B.now()
    g:cancel()
  end)
  secs = B.now() - t0
end)
B.report("W7", "luv-co", N, secs)
