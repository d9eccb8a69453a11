-- spec/thread_work.lua: functions the thread specs run in worker threads
-- by name ("thread_work.spin"), and helpers for the specs themselves.
local core = require("loom.core")

local W = {}

--- W.spin(seconds) -> "spun": busy-wait without any checkpoint.
function W.spin(seconds)
  local stop = core.now() + seconds
  while core.now() < stop do end
  return "spun"
end

--- W.spin_until_cancelled(limit) -> "not cancelled" when limit seconds
--- passed; raises Cancelled (check_cancelled) before that otherwise.
function W.spin_until_cancelled(limit)
  local loom = require("loom")
  local stop = core.now() + limit
  while core.now() < stop do loom.thread.check_cancelled() end
  return "not cancelled"
end

function W.double(x) return x * 2 end

--- W.settle(): wait until no worker call is in flight any more (abandoned
--- calls finish in the background), at most 20 s (memory checkers are
--- slow). In a task; returns core.thread_stats().
function W.settle()
  local loom = require("loom")
  local stop = loom.now() + 20
  while core.thread_stats().calls_in_flight > 0 and loom.now() < stop do
    loom.sleep(0.005)
  end
  return core.thread_stats()
end

--- W.cancel_when_running(fn) -> scope: run fn in a new cancel scope (in a
--- task of its own) and cancel that scope as soon as a worker call is in
--- flight (not before: a slow machine must not cancel it before it starts).
function W.cancel_when_running(fn)
  local loom = require("loom")
  local scope = loom.cancel_scope()
  loom.task_group(function(tg)
    tg:start_soon(function() scope:run(fn) end)
    repeat loom.sleep(0.001) until core.thread_stats().calls_in_flight > 0
    scope:cancel()
  end)
  return scope
end

return W
