-- AnyIO "Starting and initializing tasks", in loom (without networking:
-- examples/echo.lua does the same with a real TCP listener).
--
-- tg:start(fn, ...) runs fn(task_status, ...) in a new task and waits until
-- the task calls task_status:started(value). It then returns value and the
-- task's handle, and the task lives on in the group. If the task fails
-- before calling started(), the error comes out of tg:start() itself, so the
-- caller can catch it; the group is not cancelled.
--
-- Differences from the Python original:
--   * task_status is the first argument, not a keyword argument. A function
--     meant for tg:start() can still be called directly by passing
--     loom.TASK_STATUS_IGNORED.
--   * start() returns the started value *and* the handle.
local loom = require("loom")

local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local AddressInUse = loom.error_class("AddressInUse")
local services = {}   -- address -> handler: the "network" of this example

-- A worker that initialises itself, announces its address, then serves until
-- it is cancelled.
local function start_some_service(task_status, name)
  local address = name .. ".local:5000"
  loom.sleep(0.1 * SCALE)                 -- pretend to bind a socket
  if services[address] then
    error(AddressInUse("address " .. address .. " is already in use"))
  end
  services[address] = function(request) return name .. " got " .. request end
  task_status:started(address)            -- the caller's start() returns now
  local ok, err = pcall(loom.sleep_forever)   -- "listener:serve(handler)"
  services[address] = nil
  print(name .. " stopped (" .. (ok and "done" or "cancelled") .. ")")
  error(err, 0)                           -- always re-raise a Cancelled
end

local function main()
  loom.task_group(function(tg)
    -- Wait until the service is up, then use it.
    local address, handle = tg:start(start_some_service, "worker")
    print("worker is ready at " .. address .. " (" .. handle:status() .. ")")
    print(services[address]("ping"))

    -- Starting a second service on the same address fails during
    -- initialisation: the error comes out of start() bare and the group
    -- (and the first worker) carry on.
    local ok, err = pcall(tg.start, tg, start_some_service, "worker")
    assert(not ok)
    print("second start failed: " .. tostring(err))
    print("group cancelled? " .. tostring(tg.cancel_scope.cancel_called))

    -- A function that returns without calling started() is an error too.
    ok, err = pcall(tg.start, tg, function() end)
    assert(not ok)
    print("third start failed: " .. err:gsub("^.-:%d+: ", ""))

    print(services[address]("still there?"))
    tg:cancel()                           -- stop the worker
  end)

  -- TASK_STATUS_IGNORED lets the same function run without start(): here
  -- for a short while, inside a timeout.
  loom.move_on_after(0.5 * SCALE, function()
    start_some_service(loom.TASK_STATUS_IGNORED, "direct")
  end)
  print("done")
end

loom.run(main)
