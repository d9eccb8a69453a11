-- Closing a Lua state (lua_close) while loom worker threads still run:
-- idle workers are joined, busy ones detached; a detached worker finishes
-- its call without touching the closed state, and a worker blocked in
-- loom.thread.run_sync is answered. Run in separate processes, under the
-- suite's memory checker when there is one (LOOM_TEST_PREFIX, or
-- LOOM_CHILD_PREFIX when only the processes started here get it: make tsan).

-- sh(cmd) -> output (stdout and stderr), exit code
local sh = require("chost").sh

local root = sh("pwd"):gsub("%s+$", "")
local prefix = os.getenv("LOOM_CHILD_PREFIX")
  or os.getenv("LOOM_TEST_PREFIX") or ""
local build = os.getenv("LOOM_BUILD_DIR") or "build"
local lua_path = root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;"
  .. root .. "/spec/?.lua"
local lua_cpath = root .. "/" .. build .. "/?.so"

describe("lua_close while worker threads run", function()
  local bin, report = os.tmpname(), os.tmpname()

  lazy_teardown(function()
    os.remove(bin)
    os.remove(report)
  end)

  it("joins idle workers, detaches busy ones, answers blocked run_sync",
    function()
    local out, code = sh(("cc -O1 -o %s spec/embed/thread_close.c "
      .. "$(pkg-config --cflags --libs lua5.4)"):format(bin))
    assert.are.equal(0, code, out)
    out, code = sh(("timeout 120 %s %s %q %q %q"):format(prefix, bin,
      lua_path, lua_cpath, report))
    assert.are.equal(0, code, out)
    assert.are.equal(table.concat({
      "busy worker left running",
      "blocked worker left running",
      "idle workers: some",
      "run_sync after close: false loom.thread.run_sync: the runtime that "
        .. "started this worker was closed",
      "all closed", "" }, "\n"), out)
  end)

  it("lets the process exit while a worker runs forever", function()
    local script = "local loom = require('loom') "
      .. "local core = require('loom.core') "
      .. "core.thread_configure{close_grace = 0.2} "
      .. "loom.run(function() loom.task_group(function(tg) "
      .. "tg:start_soon(loom.to_thread_with, {abandon_on_cancel = true}, "
      .. "function() while true do end end) "
      .. "repeat loom.sleep(0.001) "
      .. "until core.thread_stats().calls_in_flight == 1 "
      .. "tg:cancel() end) end) print('exiting')"
    -- stdout only: memory checkers may list what the running thread holds
    -- (valgrind: "possibly lost") when the process ends under it.
    local err_file = os.tmpname()
    local out, code = sh(("(cd %q && LUA_PATH=%q LUA_CPATH=%q timeout 60 %s "
      .. "lua5.4 -e %q 2>%q)"):format(root, lua_path, lua_cpath, prefix,
      script, err_file))
    local f = io.open(err_file)
    local err = f and f:read("a") or ""
    if f then f:close() end
    os.remove(err_file)
    assert.are.equal(0, code, out .. err)
    assert.are.equal("exiting\n", out)
  end)
end)
