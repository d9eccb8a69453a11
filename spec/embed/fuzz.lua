-- spec/embed/fuzz.lua: a random host-driven program (host groups, futures,
-- events, a channel, sleeps, next_frame, errors, cancels, closes) on a manual
-- clock, for spec/step_spec.lua. Prints a transcript of every resume; the
-- same seed must give the same bytes, and nothing may stay alive.
-- Usage: lua5.4 spec/embed/fuzz.lua <seed>
local loom = require("loom")
local seed = tonumber(arg[1]) or 1
math.randomseed(seed)
local errs = 0
loom.configure{ clock = "manual", on_error = function() errs = errs + 1 end }
local groups, futures, events = {}, {}, {}
local send, recv = loom.channel(3)
local log = {}
local function body()
  for _ = 1, math.random(1, 8) do
    local r = math.random(1, 10)
    log[#log + 1] = ("%d %d %d %.4f"):format(loom.frame(),
      loom.current_task().id, r, loom.now())
    if r == 1 then loom.next_frame(math.random(1, 3))
    elseif r == 2 then loom.sleep(math.random() * 0.1)
    elseif r == 3 then loom.checkpoint()
    elseif r == 4 and #futures > 0 then futures[math.random(#futures)]:wait()
    elseif r == 5 then send:send(1)
    elseif r == 6 then recv:receive()
    elseif r == 7 then error("fuzz")
    elseif r == 8 and #events > 0 then events[math.random(#events)]:wait()
    elseif r == 9 then
      loom.move_on_after(math.random() * 0.05, function() loom.sleep(1) end)
    else
      local g = groups[math.random(#groups)]
      if g then pcall(g.start_soon, g, body) end
    end
  end
end
for frame = 1, 300 do
  local r = math.random(1, 12)
  if r == 1 or #groups == 0 then
    groups[#groups + 1] = loom.host_group("g" .. frame,
      { fail_fast = math.random() < 0.3 })
  elseif r == 2 then
    local g = table.remove(groups, math.random(#groups))
    g:close(math.random() < 0.5 and 0 or 0.01)
  elseif r == 3 then futures[#futures + 1] = loom.future()
  elseif r == 4 and #futures > 0 then
    local f = futures[math.random(#futures)]
    if not f:done() then
      if math.random() < 0.5 then f:set(1) else f:fail("f") end
    end
  elseif r == 5 then events[#events + 1] = loom.event()
  elseif r == 6 and #events > 0 then events[math.random(#events)]:set()
  elseif r == 7 then groups[math.random(#groups)]:cancel()
  else
    local g = groups[math.random(#groups)]
    for _ = 1, math.random(1, 5) do pcall(g.start_soon, g, body) end
  end
  loom.step(0, math.random(0, 50))
  loom.advance(math.random() * 0.03)
end
for _, g in ipairs(groups) do g:close(0) end
for _ = 1, 50 do loom.step(); loom.advance(0.1) end
local alive = 0
for _, g in ipairs(groups) do alive = alive + g:alive() end
print(table.concat(log, "\n"))
print(seed, "errors", errs, "alive", alive, "frames", loom.frame())
