-- The asyncio notebook's "asyncio.gather" cells, in loom, in order.
--
-- loom.gather(fns[, opts]) runs the functions concurrently in a task group
-- and returns their first results in input order. It is built on a task
-- group, so it is structured: when it returns or raises, every task it
-- started has finished. Where asyncio differs:
--   * gather is a blocking call, not a future: to wait on or cancel it from
--     elsewhere, run it in a task and use the handle;
--   * it takes functions (asyncio takes coroutines and tasks), and starts
--     them in input order;
--   * without return_exceptions a failure cancels the other functions and
--     raises an ErrorGroup (asyncio raises the first error and lets the
--     others run on, E and F);
--   * with return_exceptions a failed slot holds the error object (D), and
--     a second table errors[i] = {error =, traceback =} marks the failures.
local loom = require("loom")

local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local function factorial(name, number)
  local f = 1
  for i = 2, number do
    print(("Task %s: Compute factorial(%d), currently i=%d...")
      :format(name, number, i))
    loom.sleep(1 * SCALE)
    f = f * i
  end
  print(("Task %s: factorial(%d) = %d"):format(name, number, f))
  return f
end

local function fmt(list, n)
  local parts = {}
  for i = 1, n do parts[i] = tostring(list[i]) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

loom.run(function()
  -- In [35]: asyncio.gather() returns a _GatheringFuture. A loom gather
  -- becomes something to hold on to only when it runs in its own task.
  loom.task_group(function(tg)
    local gather_task = tg:start_soon(loom.gather, {
      function() loom.sleep(1 * SCALE) end,
    })
    print(getmetatable(gather_task).__name)
  end)

  -- In [27]: run two factorials concurrently (A). asyncio printed B first
  -- because create_task() had scheduled B before gather() wrapped A.
  local result_lst = loom.gather({
    function() return factorial("A", 2) end,
    function() return factorial("B", 3) end,
  })
  print("result_lst = " .. fmt(result_lst, 2))

  -- In [49]: cancelling the gather cancels every function in it (B).
  loom.catch({ { loom.TaskCancelled, function()
    print("Main caught gather future cancellation.")
  end } }, loom.task_group, function(tg)
    local gfut = tg:start_soon(loom.gather, {
      function() return factorial("A", 2) end,
      function() return factorial("B", 3) end,
    })
    tg:start_soon(function()                              -- cancel_coro(gfut)
      loom.wait_all_tasks_blocked()
      gfut:cancel()
      print("awaitable cancelled.")
    end)
    gfut:result()              -- `await gfut`: raises loom.TaskCancelled
  end)

  -- In [50]: cancelling one of the awaited tasks (C). Waiting for it raises
  -- TaskCancelled, a failure, so the gather cancels A and raises (asyncio
  -- raises CancelledError and lets A finish in the background).
  loom.task_group(function(tg)
    local task = tg:start_soon(factorial, "B", 3)
    loom.catch({ { loom.TaskCancelled, function()
      print("Main caught awaitable cancellation.")
    end } }, loom.gather, {
      function() return factorial("A", 2) end,
      function() return task:result() end,
      function() task:cancel() print("awaitable cancelled.") end,
    })
  end)

  -- In [53]: with return_exceptions nothing is raised; A finishes and the
  -- failed slot holds the error (D): the TaskCancelled that task:result()
  -- raised (its .cause is the loom.Cancelled) where asyncio has the
  -- CancelledError. In [56] is In [50] again: once the gather raised,
  -- everything it started has finished; nothing is left to cancel (F).
  loom.task_group(function(tg)
    local task = tg:start_soon(factorial, "B", 3)
    local errors
    result_lst, errors = loom.gather({
      function() return factorial("A", 2) end,
      function() return task:result() end,
      function() task:cancel() print("awaitable cancelled.") end,
    }, { return_exceptions = true })
    print("result_lst = " .. fmt(result_lst, 3))
    -- The second table tells a raised error from a returned value, and
    -- keeps where it was raised (errors[i].traceback).
    for i = 1, result_lst.n do
      if errors[i] then
        print(("slot %d raised %s"):format(i, tostring(errors[i].error)))
      end
    end
  end)
end)
