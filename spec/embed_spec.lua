-- A C host embedding Lua 5.4 runs several loom runtimes at once, one Lua
-- state per thread (spec/embed/host.c): loom keeps no mutable C globals, so
-- they must not interfere, and lua_close must finalise each runtime.

-- sh(cmd) -> output (stdout and stderr), exit code
local sh = require("chost").sh

local function abs(path)
  local dir = sh("pwd"):gsub("%s+$", "")
  return (path:gsub("%./", dir .. "/"))
end

describe("embedding", function()
  local bin = os.tmpname()

  lazy_teardown(function() os.remove(bin) end)

  it("runs four independent loom runtimes on four threads at once", function()
    local out, code = sh(("cc -O1 -o %s spec/embed/host.c "
      .. "$(pkg-config --cflags --libs lua5.4) -lpthread"):format(bin))
    assert.are.equal(0, code, out)
    local prefix = os.getenv("LOOM_TEST_PREFIX") or ""
    -- valgrind serialises threads; ASan needs the instrumented build.
    local build = os.getenv("LOOM_BUILD_DIR") or "build"
    out, code = sh(("timeout 120 %s %s 4 %q %q"):format(prefix, bin,
      abs("./lua/?.lua;./lua/?/init.lua"), abs("./" .. build .. "/?.so")))
    assert.are.equal(0, code, out)
    assert.truthy(out:find("4 of 4 states ok", 1, true), out)
  end)
end)
