-- Signal receivers (signal.c). Signals go to a child lua5.4 running a loom
-- program, so a broken receiver cannot kill the test runner.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")

local script = H.loom_script

-- Run src as a child; on_ready(p, b) runs once the child printed "ready".
local function with_child(src, on_ready, cmd)
  local path = script(src)
  local out
  loom.run(function()
    local p <close> = loom.open_process(cmd and cmd(path)
      or { "lua5.4", path })
    local b = loom.buffered(p.stdout)
    local got, line = pcall(b.receive_until, b, "\n", 100)
    if not got then error(tostring(line) .. ": " .. p.stderr:receive()) end
    assert.equal("ready", line)
    on_ready(p, b)
    local rest = {}
    while true do
      local more, c = pcall(b.receive, b)
      if not more then break end
      rest[#rest + 1] = c
    end
    local ok, err = pcall(p.stderr.receive, p.stderr, 65536)
    out = { rc = p:wait(), out = table.concat(rest), err = ok and err or "" }
  end)
  os.remove(path)
  return out
end

local function flush_print(...)
  return ("print(%s) io.stdout:flush()"):format(...)
end

describe("loom.open_signal_receiver", function()
  -- Nothing of this area left alive after each test.
  after_each(H.assert_no_child_leftovers)

  it("receives signals by name, in order, and iterates", function()
    local r = with_child([[
loom.run(function()
  local rx <close> = loom.open_signal_receiver("SIGUSR1", "SIGUSR2", 1,
    "SIGUSR1")   -- listed twice, received once
  ]] .. flush_print('"ready"') .. [[
  local n = 0
  for sig in rx do
    ]] .. flush_print("sig") .. [[
    n = n + 1
    if n == 3 then break end
  end
end)
]], function(p)
      p:send_signal("SIGUSR1")
      loom.sleep(0.05)
      p:send_signal("SIGUSR2")
      loom.sleep(0.05)
      p:send_signal("SIGHUP")
    end)
    assert.equal("SIGUSR1\nSIGUSR2\nSIGHUP\n", r.out)
    assert.equal(0, r.rc)
  end)

  it("several receivers of one signal each get it", function()
    local r = with_child([[
loom.run(function()
  local a <close> = loom.open_signal_receiver("SIGUSR1")
  local b <close> = loom.open_signal_receiver("SIGUSR1")
  ]] .. flush_print('"ready"') .. [[
  loom.task_group(function(tg)
    tg:start_soon(function() ]] .. flush_print('"a", a:receive()') .. [[ end)
    tg:start_soon(function() ]] .. flush_print('"b", b:receive()') .. [[ end)
  end)
end)
]], function(p) loom.sleep(0.05); p:send_signal("SIGUSR1") end)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    table.sort(lines)
    assert.same({ "a\tSIGUSR1", "b\tSIGUSR1" }, lines)
  end)

  it("restores the previous disposition on close", function()
    -- SIGTERM starts ignored (the shell's trap); the receiver takes it,
    -- then closing it puts "ignored" back: a later SIGTERM does nothing.
    local r = with_child([[
loom.run(function()
  do
    local rx <close> = loom.open_signal_receiver("SIGTERM")
    ]] .. flush_print('"ready"') .. [[
    ]] .. flush_print("rx:receive()") .. [[
  end
  ]] .. flush_print('"closed"') .. [[
  local i <close> = loom.stdin()
  ]] .. flush_print('"stdin", i:receive()') .. [[
end)
-- default again after loom.run for a signal loom never touched
]], function(p, b)
      p:terminate()
      assert.equal("SIGTERM", b:receive_until("\n", 100))
      assert.equal("closed", b:receive_until("\n", 100))
      p:terminate()
      loom.sleep(0.1)
      assert.is_nil(p.returncode)
      p.stdin:send("bye\n")
    end, function(path)
      return { "sh", "-c", "trap '' TERM; exec lua5.4 " .. path }
    end)
    assert.equal("stdin\tbye\n\n", r.out)
    assert.equal(0, r.rc)
    -- and a signal whose disposition was the default goes back to it
    r = with_child([[
loom.run(function()
  local rx = loom.open_signal_receiver("SIGUSR1")
  rx:close()
  ]] .. flush_print('"ready"') .. [[
  loom.sleep(5)
end)
]], function(p) p:send_signal("SIGUSR1") end)
    assert.equal(-10, r.rc)
  end)

  it("waiting on a signal is never taken for a deadlock", function()
    local r = with_child([[
loom.run(function()
  local rx <close> = loom.open_signal_receiver("SIGUSR2")
  ]] .. flush_print('"ready"') .. [[
  ]] .. flush_print("rx:receive()") .. [[
end)
]], function(p) loom.sleep(0.2); p:send_signal(12) end)
    assert.equal("SIGUSR2\n", r.out)
    assert.equal(0, r.rc)
  end)

  it("receive is cancellable; close wakes a receiver; bad input", function()
    loom.run(function()
      local rx <close> = loom.open_signal_receiver("SIGUSR1")
      assert.matches("^loom.SignalReceiver: 0x%x+ %(SIGUSR1%)$",
        tostring(rx))
      local scope = loom.move_on_after(0.02, function() rx:receive() end)
      assert.is_true(scope.cancelled_caught)
      loom.task_group(function(tg)
        tg:start_soon(function()
          local ok, e = pcall(rx.receive, rx)
          assert.is_false(ok)
          assert.is_true(loom.is(e, loom.ClosedResourceError))
        end)
        loom.wait_all_tasks_blocked()
        rx:close()
      end)
      local function msg(...)
        return H.message(select(2, pcall(loom.open_signal_receiver, ...)))
      end
      assert.equal("bad argument #1 to 'open_signal_receiver' (unknown "
        .. "signal name 'SIGFOO')", msg("SIGFOO"))
      assert.equal("bad argument #2 to 'open_signal_receiver' (signal name "
        .. "or number expected, got table)", msg("SIGINT", {}))
      assert.equal("bad argument #1 to 'open_signal_receiver' (SIGKILL "
        .. "cannot be caught)", msg("SIGKILL"))
      assert.equal("bad argument #1 to 'open_signal_receiver' (at least one "
        .. "signal expected)", msg())
      assert.equal("bad argument #1 to 'open_signal_receiver' (no such "
        .. "signal: 0)", msg(0))
    end)
    loom.run(function()
      loom.sleep(0.005)
      assert.same({ receivers = 0, handles = 0 }, core.signal_stats())
    end)
  end)
end)
