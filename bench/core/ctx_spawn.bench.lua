-- Spawn + join of N trivial tasks by a task that inherited a context of 8
-- keys and never looked at it (the copy-on-write case of loom.context):
-- every spawn used to copy the 8 keys; now the children share the table.
-- Run under callgrind by bench/core/ctx_callgrind.sh.
local here = arg[0]:match("^(.*)/") or "."
package.path = here .. "/../lib/?.lua;" .. package.path
package.cpath = here .. "/../out/?.so;" .. package.cpath
local B = require("bench")
local loom = require("loom")
local N = B.arg(1, 100000)

local function noop() end
local secs
loom.run(function()
  local ctx = loom.context()
  for i = 1, 8 do ctx["key" .. i] = i end
  local t0 = B.now()
  loom.task_group(function(outer)
    outer:start_soon(function()
      loom.task_group(function(tg)
        for _ = 1, N do tg:start_soon(noop) end
      end)
    end)
  end)
  secs = B.now() - t0
end)
B.report("ctx-spawn", "loom", N, secs)
