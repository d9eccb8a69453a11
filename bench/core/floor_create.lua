-- bare Lua floor for W1: per task, a coroutine created, resumed to its end,
-- and a result table slot written (the least a scheduler can do)
local N = tonumber(arg[1]) or 10000
local function noop() end
local create, resume = coroutine.create, coroutine.resume
local q = {}
for i = 1, N do q[i] = create(noop) end
for i = 1, N do resume(q[i]); q[i] = nil end
