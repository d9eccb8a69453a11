-- Regression: a deadline that became due while tasks ran (no checkpoint in
-- between) was armed as a 0 ms libuv timer; libuv 1.44 runs due timers
-- before it polls, so the poll then had no timeout and blocked behind any
-- open socket: the move_on_after below never returned.

local script = [[
local loom = require("loom")
loom.run(function()
  local listener <close> = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  loom.task_group(function(tg)
    tg:start_soon(function() pcall(listener.accept, listener) end)
    tg:start_soon(function()
      local s = loom.move_on_after(0.005, loom.sleep_forever)
      assert(s.cancelled_caught)
      print("deadline fired")
      tg:cancel()
    end)
    tg:start_soon(function()
      local t0 = loom.now()
      -- Run past the deadline and end: no checkpoint notices it.
      while loom.now() - t0 < 0.03 do end
    end)
  end)
end)
]]

describe("regression", function()
  it("a deadline due before the poll fires with a socket open", function()
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen(("LUA_PATH=%q LUA_CPATH=%q timeout 10 lua5.4 %q 2>&1")
      :format(package.path, package.cpath, file)))
    local out = p:read("a")
    local _, _, code = p:close()
    os.remove(file)
    assert.are.equal(0, code, out)
    assert.are.equal("deadline fired\n", out)
  end)
end)
