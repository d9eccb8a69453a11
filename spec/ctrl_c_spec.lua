-- Ctrl-C during loom.run (signal.c, process.lua): SIGINT goes to a child
-- lua5.4 running a loom program.
local loom = require("loom")
local H = require("helpers")

local script = H.loom_script

-- Start src, wait for its "ready" line, run act(p), collect the rest.
local function run_child(src, act, cmd)
  local path = script(src)
  local r = {}
  loom.run(function()
    local p <close> = loom.open_process(cmd and cmd(path)
      or { "lua5.4", path })
    local b = loom.buffered(p.stdout)
    assert.equal("ready", b:receive_until("\n", 1000))
    r.t0 = loom.now()
    act(p)
    local out, err = {}, {}
    loom.task_group(function(tg)
      tg:start_soon(function()
        while true do
          local ok, c = pcall(b.receive, b)
          if not ok then return end
          out[#out + 1] = c
        end
      end)
      while true do
        local ok, c = pcall(p.stderr.receive, p.stderr)
        if not ok then break end
        err[#err + 1] = c
      end
    end)
    r.rc = p:wait()
    r.elapsed = loom.now() - r.t0
    r.out, r.err = table.concat(out), table.concat(err)
  end)
  os.remove(path)
  return r
end

local PARKED = [[
local n = 0
loom.run(function()
  loom.task_group(function(tg)
    for i = 1, 10000 do
      tg:start_soon(function()
        local c <close> = setmetatable({}, { __close = function()
          n = n + 1
          if i == 1 or i == 10000 then print("closed " .. i) end
        end })
        loom.sleep(3600)
      end)
    end
    tg:start_soon(function()
      local c <close> = setmetatable({}, { __close = function()
        print("cleanup ran")
      end })
      loom.sleep(3600)
    end)
    loom.wait_all_tasks_blocked()
    print("ready")
    io.stdout:flush()
  end)
end)
]]

describe("Ctrl-C during loom.run", function()
  -- Nothing of this area left alive after each test.
  after_each(H.assert_no_child_leftovers)

  it("cancels 10,000 parked tasks, runs their <close>, raises "
    .. "Interrupted", function()
      local r = run_child(PARKED, function(p) p:send_signal("SIGINT") end)
      assert.equal("closed 1\nclosed 10000\ncleanup ran\n", r.out)
      assert.equal("lua5.4: interrupted!\n", r.err)
      assert.equal(1, r.rc)
      assert.is_true(r.elapsed < 1, "took " .. r.elapsed .. " s")
    end)

  it("Interrupted is its own class and carries the cleanup errors",
    function()
      local r = run_child([[
local ok, e = pcall(loom.run, function()
  loom.task_group(function(tg)
    tg:start_soon(function()
      local c <close> = setmetatable({}, { __close = function()
        error("cleanup failed", 0)
      end })
      loom.sleep(3600)
    end)
    loom.wait_all_tasks_blocked()
    print("ready")
    io.stdout:flush()
  end)
end)
print(ok, loom.is(e, loom.Interrupted), loom.is(e, loom.Error), e.message,
  tostring(e), #e.errors, e.errors[1])
-- the previous disposition (lua5.4's own handler) is back
print(require("loom.core").sigaction("SIGINT"))
]], function(p) p:send_signal("SIGINT") end)
      assert.equal("false\ttrue\tfalse\tinterrupted!\tinterrupted!\t1\t"
        .. "cleanup failed\nhandler\n", r.out)
      assert.equal(0, r.rc)
    end)

  it("a second SIGINT ends the process even while Lua code runs",
    function()
      local r = run_child([[
loom.run(function()
  local c <close> = setmetatable({}, { __close = function()
    print("busy cleanup")
    io.stdout:flush()
    local t = os.clock()
    while os.clock() - t < 20 do end   -- no checkpoint, no loop
  end })
  print("ready")
  io.stdout:flush()
  loom.sleep(3600)
end)
]], function(p)
        p:send_signal("SIGINT")
        loom.sleep(0.2)
        p:send_signal("SIGINT")
      end)
      assert.equal("busy cleanup\n", r.out)
      assert.equal(-2, r.rc)
      assert.is_true(r.elapsed < 1)
    end)

  it("a second SIGINT during the cleanup ends the process at once",
    function()
      local r = run_child([[
loom.run(function()
  local c <close> = setmetatable({}, { __close = function()
    print("cleaning up")
    io.stdout:flush()
    local s = loom.cancel_scope{ shield = true }
    s:run(function() loom.sleep(30) end)
  end })
  print("ready")
  io.stdout:flush()
  loom.sleep(3600)
end)
]], function(p)
        p:send_signal("SIGINT")
        loom.sleep(0.2)
        p:send_signal("SIGINT")
      end)
      assert.equal("cleaning up\n", r.out)
      assert.equal(-2, r.rc)   -- killed by SIGINT: a shell shows 130
      assert.is_true(r.elapsed < 1)
    end)

  it("leaves an ignored SIGINT alone", function()
    -- lua5.4 installs its own SIGINT handler around the script, whatever
    -- the shell said: ignore SIGINT again from inside.
    local r = run_child([[
local core = require("loom.core")
core.sigaction("SIGINT", "ignore")
loom.run(function()
  print("ready")
  io.stdout:flush()
  loom.sleep(0.3)
  print("finished")
end)
print(core.sigaction("SIGINT"))
]], function(p) p:send_signal("SIGINT") end)
    assert.equal("finished\nignore\n", r.out)
    assert.equal(0, r.rc)
  end)

  it("a SIGINT receiver takes Ctrl-C instead", function()
    local r = run_child([[
loom.run(function()
  local rx <close> = loom.open_signal_receiver("SIGINT")
  print("ready")
  io.stdout:flush()
  print(rx:receive())
end)
print("run returned")
]], function(p) p:send_signal("SIGINT") end)
    assert.equal("SIGINT\nrun returned\n", r.out)
    assert.equal(0, r.rc)
  end)
end)
