-- spec/setup.lua: loaded by busted once, before any spec file (`helper` in
-- .busted), so that it guards every test of the suite. After each test:
--
--   * the runtime is idle: loom.run is not running, no task is ready;
--   * nothing the test created is still alive: no count of core.stats() or
--     of any other core.<area>_stats() is higher than before the test (live
--     tasks, parked and queued tasks, deadlines, libuv handles and requests,
--     TCP streams and listeners, ...), and no registry reference was left
--     behind (spec/leak_check.lua says exactly what is compared).
--
-- Closes still waiting for libuv's close callback and cancelled requests
-- still finishing in its thread pool are given up to a second to land;
-- nothing is garbage-collected for them, so a stream the test forgot to
-- close is reported, not finalised away.
--
-- A test that already failed is not also reported for leaks (its failure
-- explains them); the idle check always applies. A test whose leftovers are
-- a known core limitation says so with H.known_leak(why): its leftovers are
-- accepted, and once it leaves nothing behind it fails so that the marker
-- gets removed.

local busted = require("busted")
local LC = require("leak_check")

local baseline     -- snapshot before the running test (nil: core not loaded)
local test_failed  -- the test body itself failed
local test_name    -- "file: describe ... it" of the running test

local function full_name(element)
  local names = {}
  while element do
    if element.descriptor == "file" then
      table.insert(names, 1, element.name .. ":")
      break
    elseif element.name then
      table.insert(names, 1, element.name)
    end
    element = busted.parent(element)
  end
  return table.concat(names, " ")
end

busted.subscribe({ "test", "start" }, function(element)
  test_failed = false
  test_name = full_name(element)
  return nil, true
end)

busted.subscribe({ "test", "end" }, function(_, _, status)
  test_failed = status ~= "success"
  return nil, true
end)

busted.before_each(function()
  local core = LC.core()
  baseline = core and LC.snapshot(core) or nil
  LC.known_leak = nil
end)

busted.after_each(function()
  local core = LC.core()
  local before, known = baseline, LC.known_leak
  baseline, LC.known_leak = nil, nil
  if core == nil then return end
  local idle = LC.idle_problem(core)
  if idle then error(("%s: after %s"):format(idle, test_name), 0) end
  if before == nil or test_failed then return end
  local left = LC.leftovers(core, before)
  if known then
    if #left == 0 then
      error(("fixed? %s leaves nothing behind now: remove its known_leak "
        .. "marker (%s)"):format(test_name, known), 0)
    end
  elseif #left > 0 then
    error(("%s left live objects behind:\n%s"):format(test_name,
      table.concat(left, "\n")), 0)
  end
end)
