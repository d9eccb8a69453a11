-- The leak check spec/setup.lua runs after every test (spec/leak_check.lua):
-- it must see what a test leaves behind, and nothing else.
local loom = require("loom")
local core = require("loom.core")
local LC = require("leak_check")

-- Run a spec file in its own busted (from the repo root, so .busted loads
-- spec/setup.lua as for the suite); returns its TAP output.
local function busted_output(spec_source)
  local path = os.tmpname()
  local file = path .. "_spec.lua"
  local f = assert(io.open(file, "w"))
  f:write(spec_source)
  f:close()
  local build = os.getenv("LOOM_BUILD_DIR") or "build"
  local p = assert(io.popen(("LOOM_LEAK_SETTLE=0.05 "
    .. "LUA_CPATH='%s/?.so;;' lua5.4 /usr/bin/busted "
    .. "-o TAP --cpath='%s/?.so' '%s' 2>&1"):format(build, build, file)))
  local out = p:read("a")
  p:close()
  os.remove(file)
  os.remove(path)
  return out
end

describe("the leak check after each test", function()
  it("finds every core.*_stats() function", function()
    local snap = LC.snapshot(core)
    for _, key in ipairs({ "stats.live_tasks", "stats.deadlines",
        "stats.ready", "stats.parked", "stats.queued", "stats.uv_handles",
        "stats.uv_closing", "stats.uv_reqs", "tcp_stats.streams",
        "tcp_stats.listeners", "tcp_stats.active_reqs" }) do
      assert.equal(0, snap[key], key)
    end
    assert.is_number(snap["[registry refs]"])
    -- caches and flags are not live counts
    assert.is_nil(snap["stats.pooled_coroutines"])
    assert.is_nil(snap["stats.running"])
  end)

  it("reports an open listener, and nothing once it is closed", function()
    local before = LC.snapshot(core)
    local l
    loom.run(function()
      l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
    end)
    assert.same({
      "  core.stats().uv_handles: 0 before the test, 1 after",
      "  core.tcp_stats().listeners: 0 before the test, 1 after",
    }, LC.leftovers(core, before, 0.05))
    l:close()
    -- the close callback runs when the loop runs: leftovers lets it land
    assert.same({}, LC.leftovers(core, before))
  end)

  it("reports live tasks, parked tasks and deadlines inside a run",
    function()
      local before = LC.snapshot(core)
      loom.run(function()
        loom.task_group(function(tg)
          tg:start_soon(loom.sleep, 10)
          tg:start_soon(function() loom.event():wait() end)
          loom.wait_all_tasks_blocked()
          local now = LC.snapshot(core)
          assert.equal(3, now["stats.live_tasks"])
          assert.equal(2, now["stats.parked"])
          assert.equal(1, now["stats.queued"])
          assert.equal(1, now["stats.deadlines"])
          assert.same({
            "  core.stats().deadlines: 0 before the test, 1 after",
            "  core.stats().live_tasks: 0 before the test, 3 after",
            "  core.stats().parked: 0 before the test, 2 after",
            "  core.stats().queued: 0 before the test, 1 after",
            -- the root and its two children, each on its coroutine
            "  core.stats().task_coroutines: 0 before the test, 3 after",
            -- the root hosts the group: its extension holds the list
            "  core.stats().task_extensions: 0 before the test, 1 after",
          }, LC.grown(before, now, false))
          tg.cancel_scope:cancel()
        end)
      end)
      assert.same({}, LC.leftovers(core, before))
    end)

  it("reports a registry reference left behind, not garbage", function()
    local before = LC.snapshot(core)
    -- a cancelled scope nobody entered holds its Cancelled until collected
    loom.cancel_scope():cancel()
    assert.same({}, LC.leftovers(core, before))
    local ref = debug.getregistry()
    local slot = #ref + 1
    ref[slot] = {}
    assert.same({ "  [registry refs]: "
      .. before["[registry refs]"]
      .. " before the test, "
      .. before["[registry refs]"] + 1 .. " after" },
      LC.leftovers(core, before))
    ref[slot] = nil
  end)

  it("fails a test that leaves something behind, and says what and where",
    function()
      local out = busted_output([[
local loom = require("loom")
local H = require("helpers")
describe("probe", function()
  it("leaves a listener open", function()
    loom.run(function()
      _G.keep = loom.create_tcp_listener{ local_host = "127.0.0.1" }
    end)
  end)
  it("is marked as leaking but leaves nothing", function()
    H.known_leak("a reason")
    loom.run(function() loom.sleep(0) end)
  end)
  it("closes what it opened", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      l:close()
    end)
  end)
end)
]])
      assert.matches("probe leaves a listener open left live objects "
        .. "behind:\n#   core.stats%(%).uv_handles: 0 before the test, 1 "
        .. "after\n#   core.tcp_stats%(%).listeners: 0 before the test, 1 "
        .. "after\n", out)
      assert.matches("fixed%? [^\n]* probe is marked as leaking but leaves "
        .. "nothing leaves nothing behind now: remove its known_leak marker "
        .. "%(a reason%)", out)
      -- three tests pass their bodies; the two leak reports fail
      assert.matches("\nok 5 %- probe closes what it opened\n1%.%.5", out)
      local failures = select(2, out:gsub("\nnot ok ", ""))
      assert.equal(2, failures)
    end)

  it("says when the runtime is not idle", function()
    assert.is_nil(LC.idle_problem(core))
    loom.run(function()
      assert.equal("the runtime is not idle (running: true, ready tasks: 0)",
        LC.idle_problem(core))
    end)
  end)
end)
