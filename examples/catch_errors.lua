-- AnyIO "Handling multiple errors in a task group", in loom.
--
-- More than one task of a group can fail, typically when a task reacts to
-- its cancellation by raising another error while it cleans up. The group
-- then raises a loom.ErrorGroup holding every error (even a single error is
-- wrapped). Python catches the members with `except* ValueError:` or
-- `exceptiongroup.catch({ValueError: handler, ...})`; loom has
-- loom.catch({ {matcher, handler}, ... }, fn, ...), which works like the
-- latter: each error in the group goes to the first handler whose matcher
-- matches it, the handler gets an ErrorGroup of its matches, and errors no
-- handler matched are raised again (still in a group).
--
-- Lua has no exception classes: loom.error_class(name) makes one.
local loom = require("loom")

local SCALE = os.getenv("LOOM_EXAMPLE_FAST") == "1" and 0.05 or 1

local ValueError = loom.error_class("ValueError")
local KeyError = loom.error_class("KeyError")

local function some_task()
  loom.sleep(0.1 * SCALE)
  error(ValueError("bad value"))
end

-- Cancelled when some_task fails, and fails again while cleaning up.
local function another_task()
  local ok, err = pcall(loom.sleep_forever)
  if not ok and loom.is_cancelled(err) then
    error(KeyError("'config' missing during cleanup"))
  end
end

local function run_group()
  loom.task_group(function(tg)
    tg:start_soon(some_task)
    tg:start_soon(another_task)
  end)
end

local function handle_valueerror(excgroup)
  for _, exc in ipairs(excgroup.errors) do
    print("handled " .. tostring(exc))
  end
end

local function handle_keyerror(excgroup)
  for _, exc in ipairs(excgroup.errors) do
    print("handled " .. tostring(exc))
  end
end

local function main()
  -- 1. `except* ValueError` / `except* KeyError`, or catch({...}).
  loom.catch({
    { ValueError, handle_valueerror },
    { KeyError, handle_keyerror },
  }, run_group)

  -- 2. Setting a local variable from a handler: a Lua closure can assign
  --    its enclosing function's locals directly (Python needs `nonlocal`).
  local somevariable = nil
  loom.catch({
    { ValueError, function() somevariable = "whatever" end },
    { KeyError, handle_keyerror },
  }, run_group)
  print(("somevariable=%q"):format(somevariable))

  -- 3. An error that no handler matches is raised again, in a group.
  local ok, err = pcall(loom.catch, { { ValueError, handle_valueerror } },
                        run_group)
  assert(not ok and loom.is(err, loom.ErrorGroup))
  print("not handled, raised again in a group of " .. #err.errors .. ": "
        .. tostring(err.errors[1]))

  -- 4. Without loom.catch: pcall, then split the group by class.
  ok, err = pcall(run_group)
  assert(not ok)
  local values, rest = err:split(ValueError)
  print("split: " .. #values.errors .. " ValueError, " .. #rest.errors
        .. " other (" .. tostring(rest.errors[1]) .. ")")
end

loom.run(main)
