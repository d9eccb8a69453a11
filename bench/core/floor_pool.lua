-- bare Lua floor with a reused coroutine (a pool of one): a wrap loop
local N = tonumber(arg[1]) or 10000
local function noop() end
local yield = coroutine.yield
local co = coroutine.wrap(function(f) while true do f = yield(f()) end end)
for _ = 1, N do co(noop) end
