-- loom.configure: the runtime clock (real, manual, autojump, a host
-- function) and loom.advance. Each configured runtime runs in a fresh
-- process: configure is refused once a state has run tasks.

local loom = require("loom")
local H = require("helpers")
local fresh = require("embed.fresh")

describe("clocks", function()
  it("configure is refused once tasks ran (nothing half-applied)", function()
    loom.run(function() end)
    local err = H.capture_error(function()
      loom.configure{ clock = "manual" }
    end)
    assert.are.equal("loom.configure: the runtime has already run tasks",
      H.message(err))
    -- still the real clock
    local t0 = loom.now()
    H.busy(0.002)
    assert.is_true(loom.now() > t0)
  end)

  it("configure: bad arguments", function()
    local out = fresh.ok([[
      local function try(v)
        local ok, e = pcall(function() loom.configure(v) end)
        print((tostring(e):gsub("^[^:]+:%d+: ", "")))
      end
      try(nil)
      try({ clock = "sundial" })
      try({ clock = 5 })
      try({ on_error = "shout" })
      try({ on_error = true })
      try({ colour = "red" })
      loom.configure{ clock = "manual", on_error = "raise" }
      loom.configure{}
      print(loom.now() > 0)
    ]])
    assert.are.equal(
      "bad argument #1 to 'configure' (table expected, got nil)\n"
      .. "bad argument #1 to 'configure' (unknown clock \"sundial\" "
      .. "(expected \"real\", \"manual\", \"autojump\" or a function))\n"
      .. "bad argument #1 to 'configure' (clock must be a string or a "
      .. "function, got number)\n"
      .. "bad argument #1 to 'configure' (unknown on_error \"shout\" "
      .. "(expected \"print\", \"raise\" or a function))\n"
      .. "bad argument #1 to 'configure' (on_error must be a string or a "
      .. "function, got boolean)\n"
      .. "bad argument #1 to 'configure' (unknown option 'colour' "
      .. "(expected 'clock' or 'on_error'))\n"
      .. "true\n", out)
  end)

  it("manual: starts at 0 and moves only by loom.advance", function()
    local out = fresh.ok([[
      loom.configure{ clock = "manual" }
      print(loom.now())
      local hg = loom.host_group("g")
      local t0 = os.clock()
      while os.clock() - t0 < 0.01 do end
      print(loom.now())
      loom.advance(2.5)
      print(loom.now())
      hg:start_soon(function()
        local ok, e = pcall(loom.advance, 1)
        print(ok, (tostring(e):gsub("^[^:]+:%d+: ", "")))
        loom.sleep(1)
        print("slept", loom.now())
      end)
      loom.step()
      loom.advance(0.999)
      loom.step()
      loom.advance(0.001)
      print(loom.step())
      print(hg:alive())
    ]])
    assert.are.equal("0.0\n0.0\n2.5\n"
      .. "false\tloom.advance: cannot move the clock during a step\n"
      .. "slept\t3.5\n0\tnil\n0\n", out)
  end)

  it("manual: advance bad input and on other clocks", function()
    local out = fresh.ok([[
      local function try(...)
        local n = select("#", ...)
        local args = { ... }
        local ok, e = pcall(function() loom.advance(table.unpack(args, 1, n)) end)
        print(ok, (tostring(e):gsub("^[^:]+:%d+: ", "")))
      end
      try(1)
      loom.configure{ clock = "manual" }
      try(-1)
      try(0 / 0)
      try(math.huge)
      try("x")
      try(0)
      print(loom.now())
    ]])
    assert.are.equal(
      "false\tloom.advance: the clock is not manual (use "
      .. "loom.configure{clock = \"manual\"})\n"
      .. "false\tbad argument #1 to 'advance' (dt must not be negative)\n"
      .. "false\tbad argument #1 to 'advance' (dt is NaN)\n"
      .. "false\tbad argument #1 to 'advance' (dt must be finite)\n"
      .. "false\tbad argument #1 to 'advance' (number expected, got string)\n"
      .. "true\tnil\n0.0\n", out)
  end)

  it("manual under loom.run: tasks advance the clock; deadlines fire in the "
    .. "next pass", function()
      local out = fresh.ok([[
        loom.configure{ clock = "manual" }
        loom.run(function()
          loom.task_group(function(tg)
            tg:start_soon(function()
              loom.sleep(10)
              print("woke at", loom.now())
            end)
            tg:start_soon(function()
              for _ = 1, 4 do loom.advance(3); loom.checkpoint() end
            end)
          end)
        end)
      ]])
      assert.are.equal("woke at\t12.0\n", out)
    end)

  it("manual and autojump: a scope entered with a future deadline waits "
    .. "for the clock, not for the wall clock", function()
      local script = [[
        local clock = ...
        loom.configure{ clock = clock }
        loom.run(function()
          if clock == "autojump" then loom.sleep(1000) end
          local t0 = loom.now()
          local ran, caught, at
          loom.task_group(function(tg)
            tg:start_soon(function()
              local s = loom.move_on_after(15, function()
                ran = true
                loom.sleep(20)
              end)
              caught, at = s.cancelled_caught, loom.now() - t0
            end)
            if clock == "manual" then
              for _ = 1, 5 do loom.checkpoint(); loom.advance(4) end
            end
          end)
          print(clock, ran, caught, ("%.1f"):format(at))
        end)
      ]]
      assert.are.equal("manual\ttrue\ttrue\t16.0\n",
        fresh.ok(script:gsub("%.%.%.", '"manual"', 1)))
      assert.are.equal("autojump\ttrue\ttrue\t15.0\n",
        fresh.ok(script:gsub("%.%.%.", '"autojump"', 1)))
    end)

  it("manual under loom.run: unreachable deadlines are a deadlock that "
    .. "says the clock is manual", function()
      local out = fresh.ok([[
        loom.configure{ clock = "manual" }
        local ok, e = pcall(loom.run, function() loom.sleep(1) end)
        print(ok, e)
      ]])
      assert.are.equal("false\tloom.run: deadlock: every task was blocked "
        .. "and nothing could wake them (they were cancelled) (the clock is "
        .. "manual: deadlines are reached only by loom.advance)\n", out:match("^[^\n]*\n"))
      assert.truthy(out:find("sleep at ", 1, true))
    end)

  it("autojump: loom.run sleeping an hour ends at once, an hour later",
    function()
      local out = fresh.ok([[
        loom.configure{ clock = "autojump" }
        local wall = os.time()
        local t0 = loom.now()
        loom.run(function()
          loom.sleep(3600)
          local s = loom.move_on_after(7200, function() loom.sleep_forever() end)
          print(s.cancelled_caught)
          local ok, e = pcall(loom.fail_after, 60, function() loom.sleep(61) end)
          print(ok, loom.is(e, loom.TimeoutError))
        end)
        local dt = loom.now() - t0
        print(dt >= 3600 + 7200 + 60 and dt < 3600 + 7200 + 60 + 5)
        print(os.time() - wall < 30)
      ]])
      assert.are.equal("true\nfalse\ttrue\ntrue\ntrue\n", out)
    end)

  it("autojump with loom.step: idle steps jump to the next deadline",
    function()
      local out = fresh.ok([[
        loom.configure{ clock = "autojump" }
        local hg = loom.host_group("g")
        local order = {}
        hg:start_soon(function() loom.sleep(100); order[#order+1] = "b" end)
        hg:start_soon(function() loom.sleep(50); order[#order+1] = "a" end)
        local t0 = loom.now()
        local steps = 0
        while hg:alive() > 0 and steps < 10 do loom.step(); steps = steps + 1 end
        print(table.concat(order, ","), loom.now() - t0 >= 100, steps <= 4)
      ]])
      assert.are.equal("a,b\ttrue\ttrue\n", out)
    end)

  it("a host clock function is read at each step", function()
    local out = fresh.ok([[
      local t = 100
      loom.configure{ clock = function() return t end }
      print(loom.now())
      local hg = loom.host_group("g")
      hg:start_soon(function()
        loom.sleep(5)
        print("woke", loom.now())
      end)
      loom.step()
      t = 104
      loom.step()
      t = 105
      loom.step()
      print(hg:alive(), loom.now())
    ]])
    assert.are.equal("100\nwoke\t105\n0\t105\n", out:gsub("%.0", ""))
  end)

  it("a host clock that returns a non-number or goes backwards makes the "
    .. "step raise", function()
      local out = fresh.ok([[
        local t = 10
        loom.configure{ clock = function() return t end }
        loom.step()
        t = "soon"
        local ok, e = pcall(loom.step)
        print(ok, (tostring(e):gsub("^[^:]+:%d+: ", "")))
        t = 5
        ok, e = pcall(loom.step)
        print(ok, (tostring(e):gsub("^[^:]+:%d+: ", "")))
        t = 11
        print(pcall(loom.step))
      ]])
      assert.are.equal(
        "false\tloom.step: the host clock function returned string, not a "
        .. "number of seconds\n"
        .. "false\tloom.step: the host clock went backwards (from 10.0 to "
        .. "5.0)\n"
        .. "true\t0\tnil\n", out)
    end)

  it("a host clock error inside loom.run makes loom.run raise", function()
    local out = fresh.ok([[
      local t = 10
      loom.configure{ clock = function() t = t - 1; return t end }
      local ok, e = pcall(loom.run, function() loom.checkpoint() end)
      print(ok, (tostring(e):gsub("^[^:]+:%d+: ", "")))
    ]])
    assert.truthy(out:find("false\tloom.run: the host clock went backwards",
      1, true), out)
  end)
end)
