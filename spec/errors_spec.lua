-- Error classes, ErrorGroup and loom.catch (docs/api.md "Errors").

local loom = require("loom")
local H = require("helpers")

local run = H.run

local CLASSES = { "Cancelled", "ErrorGroup", "TimeoutError", "TaskFailed",
  "TaskCancelled", "TaskNotFinished", "WouldBlock", "EndOfStream",
  "ClosedResourceError", "BrokenResourceError", "BusyResourceError",
  "OSError" }

-- Leaves of a (possibly nested) group, as a nested Lua table of messages.
local function shape(eg)
  local out = { message = eg.message }
  for i, e in ipairs(eg.errors) do
    if loom.is(e, loom.ErrorGroup) then
      out[i] = shape(e)
    elseif type(e) == "table" then
      out[i] = e.message
    else
      out[i] = e
    end
  end
  return out
end

describe("error classes", function()
  it("every documented class exists and is a class", function()
    for _, name in ipairs(CLASSES) do
      local cls = loom[name]
      assert.equal("table", type(cls), name)
      local e = name == "ErrorGroup" and cls("m", { "x" }) or cls("m")
      assert.is_true(loom.is(e, cls), name)
      assert.equal(cls, getmetatable(e), name)
      assert.equal("m", e.message, name)
    end
  end)

  it("tostring gives 'ClassName: message'", function()
    assert.equal("TimeoutError: too slow",
      tostring(loom.TimeoutError("too slow")))
    assert.equal("EndOfStream: eof", tostring(loom.EndOfStream("eof")))
    assert.equal("TaskCancelled: x", tostring(loom.TaskCancelled("x")))
    assert.equal("ClosedResourceError: closed",
      tostring(loom.ClosedResourceError("closed")))
  end)

  it("TaskCancelled is a TaskFailed, not the reverse", function()
    assert.is_true(loom.is(loom.TaskCancelled("x"), loom.TaskFailed))
    assert.is_false(loom.is(loom.TaskFailed("x"), loom.TaskCancelled))
  end)

  it("classes are distinct", function()
    for _, a in ipairs(CLASSES) do
      for _, b in ipairs(CLASSES) do
        if a ~= b and not (a == "TaskCancelled" and b == "TaskFailed") then
          local e = a == "ErrorGroup" and loom[a]("m", { 1 }) or loom[a]("m")
          assert.is_false(loom.is(e, loom[b]), a .. " is " .. b)
        end
      end
    end
  end)

  it("Class(message, fields) copies the fields", function()
    local e = loom.OSError("connect: connection refused",
                           { code = "ECONNREFUSED", extra = 1 })
    assert.equal("ECONNREFUSED", e.code)
    assert.equal(1, e.extra)
    assert.equal("connect: connection refused", e.message)
    assert.equal("OSError: connect: connection refused", tostring(e))
  end)

  it("loom.is is false for non-errors", function()
    assert.is_false(loom.is("text", loom.TimeoutError))
    assert.is_false(loom.is(nil, loom.TimeoutError))
    assert.is_false(loom.is(42, loom.TimeoutError))
    assert.is_false(loom.is({}, loom.TimeoutError))
    assert.is_false(loom.is({ message = "x" }, loom.TimeoutError))
    assert.is_false(loom.is(setmetatable({}, {}), loom.TimeoutError))
  end)
end)

describe("loom.error_class", function()
  it("makes a class whose instances print with its name", function()
    local MyError = loom.error_class("MyError")
    local e = MyError("bad thing")
    assert.is_true(loom.is(e, MyError))
    assert.equal("bad thing", e.message)
    assert.equal("MyError: bad thing", tostring(e))
  end)

  it("supports subclasses", function()
    local Base = loom.error_class("Base")
    local Sub = loom.error_class("Sub", Base)
    local SubSub = loom.error_class("SubSub", Sub)
    local e = SubSub("deep")
    assert.is_true(loom.is(e, SubSub))
    assert.is_true(loom.is(e, Sub))
    assert.is_true(loom.is(e, Base))
    assert.is_false(loom.is(Base("b"), Sub))
    assert.is_false(loom.is(Sub("s"), SubSub))
    assert.equal("SubSub: deep", tostring(e))
  end)

  it("can extend loom's classes", function()
    local Slow = loom.error_class("Slow", loom.TimeoutError)
    local e = Slow("too slow")
    assert.is_true(loom.is(e, loom.TimeoutError))
    assert.is_false(loom.is(loom.TimeoutError("x"), Slow))
    assert.equal("Slow: too slow", tostring(e))
  end)

  it("instances travel through loom.run and task groups", function()
    local Mine = loom.error_class("Mine")
    local err = H.capture_error(run, function()
      loom.task_group(function(tg)
        tg:start_soon(function() error(Mine("from child", { n = 7 })) end)
      end)
    end)
    assert.is_true(loom.is(err, loom.ErrorGroup))
    assert.is_true(loom.is(err.errors[1], Mine))
    assert.equal(7, err.errors[1].n)
  end)
end)

describe("loom.is_cancelled", function()
  it("is true for the Cancelled a checkpoint raises", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        local ok, e = pcall(loom.checkpoint)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(e))
        assert.is_true(loom.is(e, loom.Cancelled))
        assert.equal("string", type(e.message))
        H.contains(tostring(e), "Cancelled")
      end)
    end)
  end)

  it("is false for anything else", function()
    assert.is_false(loom.is_cancelled("Cancelled"))
    assert.is_false(loom.is_cancelled(nil))
    assert.is_false(loom.is_cancelled(loom.TimeoutError("x")))
    assert.is_false(loom.is_cancelled(loom.TaskCancelled("x")))
    assert.is_false(loom.is_cancelled(loom.ErrorGroup("m", { "x" })))
    assert.is_false(loom.is_cancelled({}))
  end)
end)

describe("ErrorGroup", function()
  it("can be built directly", function()
    local inner = loom.ErrorGroup("inner", { "a" })
    local eg = loom.ErrorGroup("outer", { inner, 42, "s" })
    assert.equal("outer", eg.message)
    assert.equal(3, #eg.errors)
    assert.is_true(rawequal(inner, eg.errors[1]))
    assert.equal(42, eg.errors[2])
    assert.equal("s", eg.errors[3])
    assert.is_true(loom.is(eg, loom.ErrorGroup))
  end)

  it("a task group's group has the documented message", function()
    local err = H.capture_error(run, function()
      loom.task_group(function() error("x", 0) end)
    end)
    assert.equal("unhandled errors in a task group", err.message)
    assert.equal("table", type(err.tracebacks))
  end)

  describe("split", function()
    -- EG('outer')[V1, EG('inner')[K2, V3], T4] split by ValueError.
    local ValueError = loom.error_class("ValueError")
    local KeyError = loom.error_class("KeyError")
    local TypeError = loom.error_class("TypeError")
    local function sample()
      return loom.ErrorGroup("outer", {
        ValueError("V1"),
        loom.ErrorGroup("inner", { KeyError("K2"), ValueError("V3") }),
        TypeError("T4"),
      })
    end

    it("by class keeps the nesting", function()
      local match, rest = sample():split(ValueError)
      assert.same({ message = "outer", "V1", { message = "inner", "V3" } },
        shape(match))
      assert.same({ message = "outer", { message = "inner", "K2" }, "T4" },
        shape(rest))
      assert.is_true(loom.is(match, loom.ErrorGroup))
      assert.is_true(loom.is(rest.errors[1], loom.ErrorGroup))
    end)

    it("keeps the leaves themselves", function()
      local eg = sample()
      local match = eg:split(ValueError)
      assert.is_true(rawequal(eg.errors[1], match.errors[1]))
      assert.is_true(rawequal(eg.errors[2].errors[2],
        match.errors[2].errors[1]))
    end)

    it("by a predicate applied to leaves only", function()
      local seen = {}
      local match, rest = sample():split(function(e)
        assert.is_false(loom.is(e, loom.ErrorGroup))
        seen[#seen + 1] = e.message
        return e.message:sub(-1) == "4" or e.message == "K2"
      end)
      assert.same({ "V1", "K2", "V3", "T4" }, seen)
      assert.same({ message = "outer", { message = "inner", "K2" }, "T4" },
        shape(match))
      assert.same({ message = "outer", "V1", { message = "inner", "V3" } },
        shape(rest))
    end)

    it("by a string pattern on string errors and .message", function()
      local eg = loom.ErrorGroup("m", { "disk full", loom.OSError("disk gone"),
        "net down", 42 })
      local match, rest = eg:split("^disk")
      assert.same({ message = "m", "disk full", "disk gone" }, shape(match))
      assert.same({ message = "m", "net down", 42 }, shape(rest))
    end)

    it("returns nil for an empty side", function()
      local match, rest = sample():split(loom.TimeoutError)
      assert.is_nil(match)
      assert.same(shape(sample()), shape(rest))
      match, rest = sample():split(function() return true end)
      assert.same(shape(sample()), shape(match))
      assert.is_nil(rest)
    end)

    it("drops empty nested groups", function()
      local match, rest = sample():split(KeyError)
      assert.same({ message = "outer", { message = "inner", "K2" } },
        shape(match))
      assert.same({ message = "outer", "V1", { message = "inner", "V3" },
        "T4" }, shape(rest))
    end)

    it("keeps each member's traceback with it", function()
      local eg = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function() error("a", 0) end)
          tg:start_soon(function() error(ValueError("b")) end)
        end)
      end)
      local match, rest = eg:split(ValueError)
      assert.equal(eg.tracebacks[2], match.tracebacks[1])
      assert.equal(eg.tracebacks[1], rest.tracebacks[1])
    end)
  end)

  it("subgroup returns the matching part", function()
    local eg = loom.ErrorGroup("m", { "a", loom.TimeoutError("t"), "b" })
    local sub = eg:subgroup(loom.TimeoutError)
    assert.same({ message = "m", "t" }, shape(sub))
    assert.is_nil(eg:subgroup(loom.EndOfStream))
    assert.same({ message = "m", "a", "b" },
      shape(eg:subgroup(function(e) return type(e) == "string" end)))
  end)

  describe("tracebacks", function()
    it("a member's traceback shows where the child raised it", function()
      local where1, where2
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            where1 = H.here(); error("first")
          end)
          tg:start_soon(function()
            local function deeper()
              where2 = H.here(); error(loom.TimeoutError("second"))
            end
            deeper()
          end)
        end)
      end)
      assert.equal(2, #err.errors)
      assert.equal(where1 .. ": first", err.errors[1])
      assert.equal("TimeoutError: second", tostring(err.errors[2]))
      H.contains(err.tracebacks[1], where1)
      H.contains(err.tracebacks[2], where2)
      H.contains(err.tracebacks[2], "stack traceback:")
    end)

    it("the body's error keeps the traceback of where it was raised",
      function()
        local where
        local err = H.capture_error(run, function()
          loom.task_group(function()
            where = H.here(); error({ "table error" })
          end)
        end)
        H.contains(err.tracebacks[1], where)
      end)

    it("is taken where the task's final error was raised, even when an "
      .. "equal error was raised and handled before", function()
      local first, final
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            pcall(loom.move_on_after, 1, function()
              first = H.here(); error("same", 0)
            end)
            loom.sleep(0)
            final = H.here(); error("same", 0)
          end)
        end)
      end)
      H.contains(err.tracebacks[1], final)
      assert.is_nil(err.tracebacks[1]:find(first, 1, true))
    end)

    it("is taken in the failing task, not in its host", function()
      local host_where
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function() error("child", 0) end)
          host_where = H.here(); loom.sleep_forever()
        end)
      end)
      assert.is_nil(err.tracebacks[1]:find(host_where, 1, true))
    end)

    it("tostring shows every member and its traceback", function()
      local w1, w2, w3
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function() w1 = H.here(); error("alpha") end)
          tg:start_soon(function()
            w2 = H.here(); error(loom.EndOfStream("beta"))
          end)
          tg:start_soon(function()
            loom.task_group(function(tg2)
              tg2:start_soon(function() w3 = H.here(); error("gamma") end)
            end)
          end)
        end)
      end)
      local text = tostring(err)
      H.contains(text, "unhandled errors in a task group")
      H.contains(text, "alpha")
      H.contains(text, "EndOfStream: beta")
      H.contains(text, "gamma")
      H.contains(text, w1)
      H.contains(text, w2)
      H.contains(text, w3)
      local a, b, c = text:find("alpha", 1, true), text:find("beta", 1, true),
        text:find("gamma", 1, true)
      assert.is_true(a < b and b < c)
    end)

    it("tostring of a directly built group shows its members", function()
      local text = tostring(loom.ErrorGroup("mine", { "one",
        loom.ErrorGroup("inner", { loom.WouldBlock("two") }) }))
      H.contains(text, "mine")
      H.contains(text, "one")
      H.contains(text, "inner")
      H.contains(text, "WouldBlock: two")
    end)
  end)
end)

describe("loom.catch", function()
  local ValueError = loom.error_class("ValueError")
  local KeyError = loom.error_class("KeyError")

  it("returns fn's results when nothing was raised", function()
    local r = table.pack(loom.catch({ { ValueError, error } },
      function(a, b) return b, a, nil end, 1, 2))
    assert.same({ n = 3, 2, 1, nil }, r)
  end)

  it("hands each handler a group of its matches and returns nothing when "
    .. "all were handled", function()
    local got = {}
    local eg = loom.ErrorGroup("m", { ValueError("v1"), KeyError("k"),
      loom.ErrorGroup("n", { ValueError("v2") }) })
    local r = table.pack(loom.catch({
      { ValueError, function(g) got.v = g end },
      { KeyError, function(g) got.k = g end },
    }, function() error(eg) end))
    assert.equal(0, r.n)
    assert.same({ message = "m", "v1", { message = "n", "v2" } },
      shape(got.v))
    assert.same({ message = "m", "k" }, shape(got.k))
  end)

  it("gives each leaf to the first matching handler only", function()
    local calls = {}
    loom.catch({
      { ValueError, function(_) calls[#calls + 1] = "first" end },
      { function() return true end,
        function(g) calls[#calls + 1] = shape(g) end },
    }, function()
      error(loom.ErrorGroup("m", { ValueError("v"), "s" }))
    end)
    assert.same({ "first", { message = "m", "s" } }, calls)
  end)

  it("re-raises unmatched leaves with their structure", function()
    local err = H.capture_error(loom.catch, {
      { ValueError, function() end },
    }, function()
      error(loom.ErrorGroup("m", { ValueError("v"),
        loom.ErrorGroup("n", { KeyError("k"), ValueError("w") }), "s" }))
    end)
    assert.is_true(loom.is(err, loom.ErrorGroup))
    assert.same({ message = "m", { message = "n", "k" }, "s" }, shape(err))
  end)

  it("matches a bare error as a group of one", function()
    local got
    local r = table.pack(loom.catch({
      { KeyError, function(g) got = g end },
    }, function() error(KeyError("bare")) end))
    assert.equal(0, r.n)
    assert.is_true(loom.is(got, loom.ErrorGroup))
    assert.equal(1, #got.errors)
    assert.equal("bare", got.errors[1].message)
  end)

  it("re-raises an unmatched bare error bare", function()
    local obj = KeyError("k")
    local err = H.capture_error(loom.catch, {
      { ValueError, function() end },
    }, function() error(obj) end)
    assert.is_true(rawequal(obj, err))
    err = H.capture_error(loom.catch, { { ValueError, function() end } },
      function() error("text", 0) end)
    assert.equal("text", err)
  end)

  it("raises a handler's error with the unhandled rest as a new group",
    function()
    local err = H.capture_error(loom.catch, {
      { ValueError, function() error("handler failed", 0) end },
    }, function()
      error(loom.ErrorGroup("m", { ValueError("v"), KeyError("k") }))
    end)
    assert.is_true(loom.is(err, loom.ErrorGroup))
    assert.equal(2, #err.errors)
    assert.equal("handler failed", err.errors[1])
    assert.same({ message = "m", "k" }, shape(err.errors[2]))
  end)

  it("matches string patterns", function()
    local got
    loom.catch({ { "^net", function(g) got = g end } }, function()
      error(loom.ErrorGroup("m", { "net down" }))
    end)
    assert.same({ message = "m", "net down" }, shape(got))
  end)

  it("lets fn and the handlers block", function()
    run(function()
      local got
      loom.catch({ { "late", function(g)
        loom.sleep(0.001)
        got = g.errors[1]
      end } }, function()
        loom.sleep(0.001)
        error("late", 0)
      end)
      assert.equal("late", got)
    end)
  end)

  it("handles the errors of a task group", function()
    run(function()
      local handled
      loom.catch({
        { ValueError, function(g) handled = #g.errors end },
      }, function()
        loom.task_group(function(tg)
          tg:start_soon(function() error(ValueError("a")) end)
          tg:start_soon(function() error(ValueError("b")) end)
        end)
      end)
      assert.equal(2, handled)
    end)
  end)

  it("a handler re-raising Cancelled lets the scope catch it (AnyIO "
    .. "test_reraise_cancelled_in_excgroup)", function()
    run(function()
      local s = loom.cancel_scope()
      s:run(function()
        s:cancel()
        loom.catch({
          { loom.Cancelled, function(g) error(g, 0) end },
        }, loom.sleep_forever)
      end)
      assert.is_true(s.cancelled_caught)
    end)
  end)
end)
