-- Regressions, smaller items of the same report: tasks stranded by a failed
-- loom.run ran inside the next loom.run; a hand-made Cancelled raised by a
-- child was silently dropped; tostring(eg) raised when a member's
-- __tostring raised; wrong self on BufferedStream, ErrorGroup and
-- Condition:wait_for methods gave raw "attempt to index" errors.

local loom = require("loom")
local core = require("loom.core")

-- The hooks table the core calls to build error objects.
local function core_hooks()
  for _, v in pairs(debug.getregistry()) do
    if type(v) == "table" and rawget(v, "root_error") and
        rawget(v, "cancelled") then
      return v
    end
  end
  error("hooks not found")
end

describe("regression: tasks stranded by a failed loom.run", function()
  it("are cancelled and finished when that run ends", function()
    local hooks = core_hooks()
    local real = hooks.cancelled
    local handles, log = {}, {}
    local ok, err = pcall(loom.run, function()
      loom.task_group(function(tg)
        handles[1] = tg:start_soon(function()
          local ok2 = pcall(loom.sleep_forever)
          log[#log + 1] = ok2 and "woken" or "cancelled"
          error(ok2 and "not cancelled" or "cancelled", 0)
        end)
        handles[2] = tg:start_soon(function()
          -- Its deadline fires in the scheduler, whose hook breaks once:
          -- the drain itself fails.
          hooks.cancelled = function()
            hooks.cancelled = real
            error("hook broke", 0)
          end
          loom.move_on_after(0.005, loom.sleep_forever)
        end)
      end)
    end)
    hooks.cancelled = real
    assert.is_false(ok)
    assert.equal("hook broke", err)
    assert.same({ "cancelled" }, log)
    assert.is_true(handles[1]:done())
    assert.is_true(handles[2]:done())
    assert.equal(0, core.stats().live_tasks)
    assert.equal(0, core.stats().deadlines)
    -- The next run starts clean: nothing of the failed one runs in it.
    assert.equal(42, loom.run(function()
      loom.sleep(0.01)
      return 42
    end))
    assert.same({ "cancelled" }, log)
  end)
end)

describe("regression: a burst of tasks", function()
  it("leaves no anchor array of its size behind", function()
    local function mem()
      collectgarbage()
      collectgarbage()
      return collectgarbage("count")
    end
    local function burst(n)
      loom.run(function()
        loom.task_group(function(tg)
          for _ = 1, n do tg:start_soon(loom.sleep, 0.001) end
        end)
      end)
    end
    burst(1000)  -- fills the coroutine pool
    local before = mem()
    burst(100000)
    -- A registry ref per task and per coroutine kept ~4 MB of array.
    assert.is_true(mem() - before < 512, ("%.0f KB kept after the burst")
      :format(mem() - before))
    assert.equal(0, core.stats().live_tasks)
  end)
end)

describe("regression: a Cancelled not issued by a scope", function()
  it("is an error of the child, not a silent cancellation", function()
    local fake = setmetatable({ message = "fake" }, loom.Cancelled)
    local err = select(2, pcall(loom.run, function()
      loom.task_group(function(tg)
        tg:start_soon(function() error(fake) end)
      end)
    end))
    assert.is_true(loom.is(err, loom.ErrorGroup))
    assert.equal(fake, err.errors[1])
    assert.is_false(loom.is_cancelled(fake))
  end)

  it("raised by a scope body is not caught by the scope", function()
    local fake = setmetatable({}, loom.Cancelled)
    loom.run(function()
      local s = loom.cancel_scope()
      local ok, e = pcall(s.run, s, function()
        s:cancel()
        error(fake)
      end)
      assert.is_false(ok)
      assert.equal(fake, e)
      assert.is_false(s.cancelled_caught)
    end)
  end)
end)

describe("regression: ErrorGroup rendering and methods", function()
  it("renders a member whose __tostring raises", function()
    local bad = setmetatable({}, {
      __tostring = function() error("boom", 0) end })
    local eg = loom.ErrorGroup("m", { bad, "plain" })
    local s = tostring(eg)
    assert.truthy(s:find("<error in __tostring: boom>", 1, true), s)
    assert.truthy(s:find("plain", 1, true), s)
  end)

  it("gives lauxlib-style messages for a bad self", function()
    local eg = loom.ErrorGroup("m", { "x" })
    for _, m in ipairs({ "split", "subgroup" }) do
      local ok, e = pcall(eg[m], 5, loom.Cancelled)
      assert.is_false(ok)
      assert.equal(("calling '%s' on bad self (loom.ErrorGroup expected, "
        .. "got number)"):format(m), e)
    end
    local ok, e = pcall(eg.leaves, {})
    assert.is_false(ok)
    assert.equal("calling 'leaves' on bad self (loom.ErrorGroup expected, "
      .. "got table)", e)
    ok, e = pcall(loom.ErrorGroup, "m", { "x" }, 5)
    assert.is_false(ok)
    assert.truthy(e:find("bad argument #3 to 'ErrorGroup' (table of "
      .. "tracebacks expected, got number)", 1, true), e)
  end)

  it("Condition:wait_for and BufferedStream methods check self", function()
    local cond = loom.condition()
    local ok, e = pcall(cond.wait_for, "x", function() return true end)
    assert.is_false(ok)
    assert.truthy(e:find("calling 'wait_for' on bad self (loom.Condition "
      .. "expected, got string)", 1, true), e)
    loom.run(function()
      local listener <close> = loom.create_tcp_listener{
        local_host = "127.0.0.1" }
      local _, port = listener:local_address()
      local stream <close> = loom.connect_tcp("127.0.0.1", port)
      local b = loom.buffered(stream)
      for _, m in ipairs({ "send", "send_eof", "close", "local_address",
          "remote_address", "receive", "receive_exactly",
          "receive_until" }) do
        ok, e = pcall(b[m], stream, "x")
        assert.is_false(ok)
        assert.truthy(e:find(("calling '%s' on bad self (loom.BufferedStream "
          .. "expected, got loom.TCPStream)"):format(m), 1, true), e)
      end
      ok, e = pcall(listener.serve, stream, function() end)
      assert.is_false(ok)
      assert.truthy(e:find("calling 'serve' on bad self (loom.TCPListener "
        .. "expected, got loom.TCPStream)", 1, true), e)
    end)
  end)
end)
