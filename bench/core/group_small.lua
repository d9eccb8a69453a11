-- The cost of a small task group: N `loom.task_group` calls with one child
-- each, in one task (ns per group, medians of 5 rounds). Guards what a
-- group costs to make, which W1-W7 (one group each) do not see: a group
-- given a metatable of its own when made cost 40 % more here.
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/?.so;;" \
--     lua5.4 bench/core/group_small.lua [N]
local loom = require("loom")
local N = tonumber(arg and arg[1]) or 100000

local function child() end
local function body(tg) tg:start_soon(child) end

local rounds = {}
loom.run(function()
  for r = 1, 5 do
    local t0 = os.clock()
    for _ = 1, N do loom.task_group(body) end
    rounds[r] = (os.clock() - t0) / N * 1e9
  end
end)
table.sort(rounds)
print(("small groups: %d task_group calls with one child: %.0f ns per group "
  .. "(median of 5; %.0f-%.0f)"):format(N, rounds[3], rounds[1], rounds[5]))
