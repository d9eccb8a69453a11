-- Misuse of the core API: wrong argument types, negative or NaN delays,
-- blocking calls outside a task or where Lua cannot yield, loom.run inside
-- a task, scopes run twice, spawning into an exited group (docs/api.md,
-- "Conventions").

local loom = require("loom")
local H = require("helpers")

local run = H.run

local NOT_ACTIVE =
  "This task group is not active; no new tasks can be started."

local function outside(fn)
  return "loom." .. fn .. ": must be called from inside a loom task (start "
    .. "one with loom.run)"
end

local function cannot_suspend(fn)
  return "loom." .. fn .. ": cannot suspend here (called where Lua cannot "
    .. "yield, such as a table.sort comparator, a gsub callback or a "
    .. "metamethod called from C)"
end

-- The message fn raises, without the leading position.
local function message_of(fn, ...)
  return H.message(H.capture_error(fn, ...))
end

-- Call fn(...) from a table.sort comparator / a gsub callback / __tostring.
local function in_sort(fn, ...)
  local args = table.pack(...)
  table.sort({ 2, 1 }, function(a, b)
    fn(table.unpack(args, 1, args.n))
    return a < b
  end)
end
local function in_gsub(fn, ...)
  local args = table.pack(...)
  string.gsub("x", "x", function() fn(table.unpack(args, 1, args.n)) end)
end
local function in_tostring(fn, ...)
  local args = table.pack(...)
  return tostring(setmetatable({}, { __tostring = function()
    fn(table.unpack(args, 1, args.n))
    return "x"
  end }))
end

describe("loom.run misuse", function()
  it("wants a function", function()
    assert.equal("bad argument #1 to 'run' (function expected, got nil)",
      message_of(function() loom.run(nil) end))
    assert.equal("bad argument #1 to 'run' (function expected, got number)",
      message_of(function() loom.run(42) end))
    assert.equal("bad argument #1 to 'run' (function expected, got no value)",
      message_of(function() loom.run() end))
    assert.equal("bad argument #1 to 'run' (function expected, got table)",
      message_of(function() loom.run({}) end))
  end)

  it("raises inside a task, in a coroutine of a task and in a sort "
    .. "comparator", function()
    run(function()
      local ran = false
      local function inner() ran = true end
      local want = "loom.run: cannot be called from inside a loom task"
      H.contains(message_of(function() loom.run(inner) end), want)
      H.contains(message_of(coroutine.wrap(function() loom.run(inner) end)),
        want)
      H.contains(message_of(in_sort, loom.run, inner), want)
      assert.is_false(ran)
      loom.checkpoint()
    end)
    assert.equal(1, run(function() return 1 end))
  end)
end)

describe("blocking calls outside a task", function()
  for _, fn in ipairs({ "sleep", "sleep_until", "sleep_forever", "checkpoint",
      "checkpoint_if_cancelled", "cancel_shielded_checkpoint",
      "wait_all_tasks_blocked" }) do
    it("loom." .. fn .. " raises the documented message", function()
      assert.equal(outside(fn), message_of(loom[fn], 0))
      assert.equal(outside(fn), message_of(function() loom[fn](0) end))
    end)
  end

  for _, fn in ipairs({ "current_effective_deadline", "current_task",
      "context" }) do
    it("loom." .. fn .. " raises outside a task", function()
      assert.equal(outside(fn), message_of(loom[fn]))
    end)
  end

  it("task groups and scopes raise outside a task", function()
    local fns = {
      function() loom.task_group(function() end) end,
      function() loom.cancel_scope():run(function() end) end,
      function() loom.move_on_after(1, function() end) end,
      function() loom.move_on_at(1, function() end) end,
      function() loom.fail_after(1, function() end) end,
      function() loom.fail_at(1, function() end) end,
    }
    for _, f in ipairs(fns) do
      H.contains(message_of(f), "must be called from inside a loom task")
    end
  end)

  it("a coroutine inside a task is not a task", function()
    run(function()
      local err = message_of(coroutine.wrap(function() loom.sleep(0) end))
      H.contains(err, "loom.sleep: called from a plain coroutine, not a loom "
        .. "task (a coroutine created inside a task is not a task: call this "
        .. "from the task itself, or start a task for it with "
        .. "tg:start_soon)")
      -- Also for the calls that need a task without waiting.
      local lock = loom.lock()
      err = message_of(coroutine.wrap(function() lock:acquire_nowait() end))
      H.contains(err, "called from a plain coroutine, not a loom task")
      err = message_of(coroutine.wrap(function()
        loom.gather({ function() end })
      end))
      H.contains(err, "loom.gather: called from a plain coroutine")
    end)
  end)

  it("loom.now works anywhere", function()
    assert.equal("number", type(loom.now()))
  end)
end)

describe("blocking calls where Lua cannot yield", function()
  local cases = {
    { "sleep", 0 }, { "sleep", 0.01 }, { "sleep_until", 0 },
    { "sleep_forever" }, { "checkpoint" }, { "cancel_shielded_checkpoint" },
    { "wait_all_tasks_blocked" },
  }
  for _, case in ipairs(cases) do
    local fn = case[1]
    it("loom." .. fn .. " raises the documented message", function()
      run(function()
        local f = loom[fn]
        assert.equal(cannot_suspend(fn), message_of(in_sort, f, case[2]))
        assert.equal(cannot_suspend(fn), message_of(in_gsub, f, case[2]))
        assert.equal(cannot_suspend(fn), message_of(in_tostring, f, case[2]))
        -- the task is unharmed
        loom.sleep(0)
        loom.sleep(0.001)
      end)
    end)
  end

  it("a non-blocking call works there", function()
    run(function()
      in_sort(loom.checkpoint_if_cancelled)
      in_gsub(loom.current_effective_deadline)
      in_tostring(loom.current_task)
      in_sort(loom.cancel_scope().run, loom.cancel_scope(), function() end)
    end)
  end)

  it("a scope whose body blocks there raises and is left cleanly", function()
    run(function()
      local outer = loom.cancel_scope()
      outer:run(function()
        local err = message_of(in_gsub, loom.move_on_after, 1, function()
          loom.sleep(0)
        end)
        assert.equal(cannot_suspend("sleep"), err)
      end)
      loom.sleep(0)
    end)
  end)

  it("loom.task_group raises the documented message", function()
    run(function()
      local err = message_of(in_sort, loom.task_group, function() end)
      assert.equal(cannot_suspend("task_group"), err)
    end)
  end)

  it("a refused task_group leaves the task's scopes intact", function()
    run(function()
      local outer = loom.cancel_scope()
      outer:run(function()
        pcall(in_sort, loom.task_group, function() end)
      end)
      outer = loom.cancel_scope()
      outer:run(function()
        pcall(in_gsub, loom.task_group, function(tg)
          tg:start_soon(function() end)
        end)
      end)
    end)
  end)
end)

describe("bad delays and deadlines", function()
  it("sleep", function()
    run(function()
      assert.equal("bad argument #1 to 'sleep' (delay must not be negative)",
        message_of(function() loom.sleep(-1) end))
      assert.equal("bad argument #1 to 'sleep' (delay must not be negative)",
        message_of(function() loom.sleep(-math.huge) end))
      assert.equal("bad argument #1 to 'sleep' (delay is NaN)",
        message_of(function() loom.sleep(0 / 0) end))
      assert.equal("bad argument #1 to 'sleep' (number expected, got string)",
        message_of(function() loom.sleep("x") end))
      assert.equal("bad argument #1 to 'sleep' (number expected, got no "
        .. "value)", message_of(function() loom.sleep() end))
    end)
  end)

  it("are checked before anything else", function()
    assert.equal("bad argument #1 to 'sleep' (delay must not be negative)",
      message_of(function() loom.sleep(-1) end))
  end)

  it("sleep_until", function()
    run(function()
      assert.equal("bad argument #1 to 'sleep_until' (deadline is NaN)",
        message_of(function() loom.sleep_until(0 / 0) end))
      assert.equal("bad argument #1 to 'sleep_until' (number expected, got "
        .. "table)", message_of(function() loom.sleep_until({}) end))
    end)
  end)

  it("move_on_after / fail_after reject negative, NaN and non-numbers",
    function()
      run(function()
        local fn = function() error("not reached") end
        for _, name in ipairs({ "move_on_after", "fail_after" }) do
          assert.equal("bad argument #1 to '" .. name .. "' (delay must not "
            .. "be negative)", message_of(function() loom[name](-1, fn) end))
          H.contains(message_of(function() loom[name](0 / 0, fn) end),
            "bad argument #1 to '" .. name .. "' (")
          H.contains(message_of(function() loom[name](0 / 0, fn) end), "NaN")
          assert.equal("bad argument #1 to '" .. name .. "' (number expected, "
            .. "got string)", message_of(function() loom[name]("1", fn) end))
        end
      end)
    end)

  it("move_on_at / fail_at reject NaN and non-numbers, accept the past",
    function()
      run(function()
        local fn = function() error("not reached") end
        for _, name in ipairs({ "move_on_at", "fail_at" }) do
          H.contains(message_of(function() loom[name](0 / 0, fn) end),
            "bad argument #1 to '" .. name .. "' (")
          H.contains(message_of(function() loom[name](0 / 0, fn) end), "NaN")
          assert.equal("bad argument #1 to '" .. name .. "' (number expected, "
            .. "got boolean)", message_of(function() loom[name](true, fn) end))
        end
        loom.move_on_at(-1, function() end)
      end)
    end)

  it("timeouts want a function", function()
    run(function()
      for _, name in ipairs({ "move_on_after", "move_on_at", "fail_after",
          "fail_at" }) do
        assert.equal("bad argument #2 to '" .. name .. "' (function expected, "
          .. "got number)", message_of(function() loom[name](1, 2) end))
        assert.equal("bad argument #2 to '" .. name .. "' (function expected, "
          .. "got nil)", message_of(function() loom[name](1) end))
      end
    end)
  end)

  it("argument errors point at the caller's line", function()
    run(function()
      local fn = function() end
      local cases = {
        function() loom.move_on_after("x", fn) end,
        function() loom.move_on_after(0 / 0, fn) end,
        function() loom.move_on_at(0 / 0, fn) end,
        function() loom.fail_at("x", fn) end,
        function() loom.fail_after(-1, fn) end,
        function() loom.catch("x", fn) end,
        function() loom.catch({}, 42) end,
      }
      for _, case in ipairs(cases) do
        local ok, err = pcall(case)
        local where = debug.getinfo(case, "S").short_src .. ":"
          .. debug.getinfo(case, "S").linedefined
        assert.is_false(ok)
        assert.equal(where .. ": ", err:sub(1, #where + 2))
      end
    end)
  end)
end)

describe("cancel scope misuse", function()
  it("cancel_scope options are checked", function()
    H.contains(message_of(function() loom.cancel_scope("x") end),
      "bad argument #1 to 'cancel_scope' (table expected, got string)")
    H.contains(message_of(function()
      loom.cancel_scope{ deadline = "soon" }
    end), "bad argument #1 to 'cancel_scope' (")
    H.contains(message_of(function()
      loom.cancel_scope{ deadline = 0 / 0 }
    end), "NaN")
    H.contains(message_of(function() loom.cancel_scope{ shield = 1 } end),
      "bad argument #1 to 'cancel_scope' (")
  end)

  it("a scope runs only once", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function() end)
      local err = message_of(function() s:run(function() end) end)
      H.contains(err, "loom.CancelScope:run: a cancel scope can be run only "
        .. "once")
      s = loom.cancel_scope()
      s:run(function()
        err = message_of(function() s:run(function() end) end)
      end)
      H.contains(err, "can be run only once")
    end)
  end)

  it("scope:run wants a function", function()
    run(function()
      local s = loom.cancel_scope()
      assert.equal("bad argument #1 to 'run' (function expected, got number)",
        message_of(function() s:run(42) end))
      -- the scope was not used up
      s:run(function() end)
    end)
  end)

  it("scope:cancel wants a string reason", function()
    local s = loom.cancel_scope()
    assert.equal("bad argument #1 to 'cancel' (string expected, got number)",
      message_of(function() s:cancel(42) end))
    assert.is_false(s.cancel_called)
    s:cancel(nil)
    assert.is_true(s.cancel_called)
  end)

  it("methods on a bad self follow lauxlib", function()
    local s = loom.cancel_scope()
    H.contains(message_of(function()
      local fake = { cancel = s.cancel }
      fake:cancel()
    end), "calling 'cancel' on bad self")
  end)

  it("scope:run on a bad self follows lauxlib", function()
    run(function()
      local s = loom.cancel_scope()
      local fake = { run = s.run }
      local where
      local ok, err = pcall(function()
        where = H.here(); fake:run(function() end)
      end)
      assert.is_false(ok)
      H.contains(err, "calling 'run' on bad self")
      assert.equal(where .. ": ", err:sub(1, #where + 2))
    end)
  end)

  it("fields are checked on assignment", function()
    local s = loom.cancel_scope()
    H.contains(message_of(function() s.shield = "yes" end),
      "boolean expected, got string")
    H.contains(message_of(function() s.deadline = "later" end),
      "number expected, got string")
    H.contains(message_of(function() s.deadline = 0 / 0 end), "NaN")
    H.contains(message_of(function() s.cancel_called = true end),
      "cannot set field 'cancel_called'")
    H.contains(message_of(function() s.anything = 1 end),
      "cannot set field 'anything'")
    assert.is_false(s.shield)
    assert.equal(math.huge, s.deadline)
    assert.is_false(s.cancel_called)
  end)
end)

describe("task group misuse", function()
  it("task_group wants a function", function()
    run(function()
      assert.equal("bad argument #1 to 'task_group' (function expected, got "
        .. "nil)", message_of(function() loom.task_group() end))
      assert.equal("bad argument #1 to 'task_group' (function expected, got "
        .. "string)", message_of(function() loom.task_group("f") end))
    end)
  end)

  it("start_soon / create_task want a function", function()
    run(function()
      loom.task_group(function(tg)
        assert.equal("bad argument #1 to 'start_soon' (function expected, "
          .. "got number)", message_of(function() tg:start_soon(42) end))
        assert.equal("bad argument #1 to 'start_soon' (function expected, "
          .. "got no value)", message_of(function() tg:start_soon() end))
        assert.equal("bad argument #1 to 'create_task' (function expected, "
          .. "got table)", message_of(function() tg:create_task({}) end))
      end)
    end)
  end)

  it("tg:cancel wants a string reason", function()
    run(function()
      loom.task_group(function(tg)
        assert.equal("bad argument #1 to 'cancel' (string expected, got "
          .. "number)", message_of(function() tg:cancel(42) end))
        assert.is_false(tg.cancel_scope.cancel_called)
      end)
    end)
  end)

  it("group methods on a bad self follow lauxlib", function()
    run(function()
      loom.task_group(function(tg)
        H.contains(message_of(function()
          local fake = { start_soon = tg.start_soon }
          fake:start_soon(print)
        end), "calling 'start_soon' on bad self")
      end)
    end)
  end)

  it("spawning into an exited group raises the documented message",
    function()
      run(function()
        local saved
        loom.task_group(function(tg) saved = tg end)
        assert.equal(NOT_ACTIVE,
          message_of(function() saved:start_soon(print) end))
        assert.equal(NOT_ACTIVE,
          message_of(function() saved:create_task(print) end))
        -- the message is raised as is, not inside a group
        local err = H.capture_error(saved.start_soon, saved, print)
        assert.equal("string", type(err))
      end)
    end)

  it("spawning into a group exited with an error raises too", function()
    run(function()
      local saved
      pcall(loom.task_group, function(tg)
        saved = tg
        tg:start_soon(function() error("x") end)
      end)
      assert.equal(NOT_ACTIVE,
        message_of(function() saved:start_soon(print) end))
    end)
  end)

  it("spawning into a group of a finished run raises", function()
    local saved
    run(function() loom.task_group(function(tg) saved = tg end) end)
    assert.equal(NOT_ACTIVE, message_of(function() saved:start_soon(print) end))
  end)
end)

describe("error API misuse", function()
  it("error_class", function()
    assert.equal("bad argument #1 to 'error_class' (string expected, got "
      .. "number)", message_of(function() loom.error_class(42) end))
    H.contains(message_of(function() loom.error_class("X", {}) end),
      "bad argument #2 to 'error_class' (")
    H.contains(message_of(function()
      loom.TimeoutError("m", 42)
    end), "bad argument #2 to 'TimeoutError' (")
  end)

  it("is wants a class", function()
    H.contains(message_of(function() loom.is({}, 42) end),
      "bad argument #2 to 'is' (")
    H.contains(message_of(function() loom.is({}) end),
      "bad argument #2 to 'is' (")
  end)

  it("ErrorGroup wants a non-empty table of errors", function()
    H.contains(message_of(function() loom.ErrorGroup("m", 42) end),
      "bad argument #2 to 'ErrorGroup' (")
    H.contains(message_of(function() loom.ErrorGroup("m", {}) end),
      "bad argument #2 to 'ErrorGroup' (")
  end)

  it("split / subgroup want a matcher", function()
    local eg = loom.ErrorGroup("m", { "x" })
    H.contains(message_of(function() eg:split(42) end),
      "bad argument #1 to 'split' (")
    H.contains(message_of(function() eg:subgroup() end),
      "bad argument #1 to 'subgroup' (")
  end)

  it("catch checks its handlers and function", function()
    local fn = function() end
    H.contains(message_of(function() loom.catch("x", fn) end),
      "bad argument #1 to 'catch' (")
    H.contains(message_of(function() loom.catch({ 42 }, fn) end),
      "bad argument #1 to 'catch' (")
    H.contains(message_of(function()
      loom.catch({ { loom.Cancelled, "handler" } }, fn)
    end), "bad argument #1 to 'catch' (")
    H.contains(message_of(function() loom.catch({ { 42, fn } }, fn) end),
      "bad argument #1 to 'catch' (")
    H.contains(message_of(function() loom.catch({}, 42) end),
      "bad argument #2 to 'catch' (")
  end)
end)
