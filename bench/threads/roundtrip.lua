-- Round trip of a trivial loom.to_thread call: N calls one after the other
-- from one task (the worker is warm after the first). Prints µs per call.
local loom = require("loom")
local N = tonumber(arg[1]) or 20000

local function noop() end

local us = loom.run(function()
  for _ = 1, 100 do loom.to_thread(noop) end       -- warm up
  local t0 = loom.now()
  for _ = 1, N do loom.to_thread(noop) end
  return (loom.now() - t0) / N * 1e6
end)
print(("%.2f"):format(us))
