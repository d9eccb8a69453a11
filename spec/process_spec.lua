-- Child processes (process.c, process.lua): run_process, open_process,
-- streams to the child, signals, cancellation, reaping and bad input.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error")
  return e
end

-- Is there a process with this pid (a zombie counts)?
local function exists(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if f then f:close() end
  return f ~= nil
end

local ME do
  local f = io.open("/proc/self/stat")
  ME = f:read("a"):match("^(%d+)")
  f:close()
end

-- Our children in /proc that are zombies.
local function zombies()
  local me = ME
  local n = 0
  local p = io.popen("cat /proc/[0-9]*/stat 2>/dev/null")
  for line in p:lines() do
    local state, ppid = line:match("%) (%a) (%d+)")
    if state == "Z" and ppid == me then n = n + 1 end
  end
  p:close()
  return n
end

-- Our open fds as one sorted "fd -> target" line each (without the pipe
-- of the listing itself).
local function fd_list()
  collectgarbage()
  collectgarbage()
  -- the shell's stdout is the pipe popen reads: leave it out
  local p = io.popen("ls -l /proc/" .. ME .. "/fd | grep -vF "
    .. "\"$(readlink /proc/$$/fd/1)\"")
  local out = {}
  for l in p:lines() do out[#out + 1] = l:match("%d+ %-> .*") end
  p:close()
  table.sort(out)
  return table.concat(out, "\n")
end

local function settle() loom.sleep(0.005) end

-- Nothing left alive; outside a run, in a run of its own (closing handles
-- finish in the loop).
local function assert_clean()
  if not core.stats().running then return loom.run(assert_clean) end
  settle()
  assert.equal(0, core.process_stats().running)
  local st = core.pipe_stats()
  assert.equal(0, st.streams)
  assert.equal(0, st.closing)
end

describe("loom.run_process", function()
  -- Nothing of this area left alive after each test.
  after_each(H.assert_no_child_leftovers)

  it("captures stdout and stderr of an argv command", function()
    loom.run(function()
      local r = loom.run_process({ "sh", "-c", "echo out; echo err >&2" })
      assert.same({ "sh", "-c", "echo out; echo err >&2" }, r.args)
      assert.equal(0, r.returncode)
      assert.equal("out\n", r.stdout)
      assert.equal("err\n", r.stderr)
      assert_clean()
    end)
  end)

  it("runs a string through /bin/sh and keeps .args as given", function()
    loom.run(function()
      local r = loom.run_process("printf '%s-%s' a b | tr a-z A-Z")
      assert.equal("printf '%s-%s' a b | tr a-z A-Z", r.args)
      assert.equal("A-B", r.stdout)
    end)
  end)

  it("raises CalledProcessError for a non-zero exit with check", function()
    loom.run(function()
      local e = err_of(loom.run_process, "echo o; echo e >&2; exit 3")
      assert.is_true(loom.is(e, loom.CalledProcessError))
      assert.is_true(loom.is(e, loom.Error))
      assert.equal(3, e.returncode)
      assert.equal("echo o; echo e >&2; exit 3", e.cmd)
      assert.equal("o\n", e.stdout)
      assert.equal("e\n", e.stderr)
      assert.equal("Command 'echo o; echo e >&2; exit 3' returned non-zero "
        .. "exit status 3.", e.message)
      local r = loom.run_process("exit 3", { check = false })
      assert.equal(3, r.returncode)
    end)
  end)

  it("gives -signum for a child killed by a signal", function()
    loom.run(function()
      local r = loom.run_process("kill -9 $$", { check = false })
      assert.equal(-9, r.returncode)
      local e = err_of(loom.run_process, { "sh", "-c", "kill -TERM $$" })
      assert.equal(-15, e.returncode)
      assert.equal("Command 'sh -c kill -TERM $$' died with SIGTERM.",
        e.message)
    end)
  end)

  it("writes input to stdin and closes it", function()
    loom.run(function()
      local r = loom.run_process({ "cat" }, { input = "hello\nworld" })
      assert.equal("hello\nworld", r.stdout)
      r = loom.run_process({ "wc", "-c" }, { input = "" })
      assert.equal("0", r.stdout:match("%d+"))
      -- a child that does not read its input is not an error
      r = loom.run_process({ "true" }, { input = ("x"):rep(1 << 20) })
      assert.equal(0, r.returncode)
    end)
  end)

  it("merges stderr into stdout, discards or inherits", function()
    loom.run(function()
      local r = loom.run_process("echo a; echo b >&2; echo c",
        { stderr = "stdout" })
      assert.equal("a\nb\nc\n", r.stdout)
      assert.is_nil(r.stderr)
      r = loom.run_process("echo a; echo b >&2", { stdout = "null",
        stderr = "null" })
      assert.is_nil(r.stdout)
      assert.is_nil(r.stderr)
      r = loom.run_process("cat", { stdin = "null" })
      assert.equal("", r.stdout)
      r = loom.run_process("cat", { stdin = "pipe" })   -- closed at once
      assert.equal("", r.stdout)
    end)
  end)

  it("takes cwd, env and start_new_session", function()
    loom.run(function()
      local r = loom.run_process("pwd", { cwd = "/tmp" })
      assert.equal("/tmp\n", r.stdout)
      r = loom.run_process({ "/usr/bin/env" }, { env = { A = "1", B = 2 } })
      assert.equal("A=1\nB=2\n", r.stdout)
      -- a new session: the child leads it (its session id is its pid)
      r = loom.run_process({ "sh", "-c",
        "echo $$ $(cut -d' ' -f6 /proc/$$/stat)" },
        { start_new_session = true })
      local pid, sid = r.stdout:match("(%d+) (%d+)")
      assert.equal(pid, sid)
      r = loom.run_process({ "sh", "-c",
        "echo $$ $(cut -d' ' -f6 /proc/$$/stat)" })
      pid, sid = r.stdout:match("(%d+) (%d+)")
      assert.are_not.equal(pid, sid)
    end)
  end)

  it("reads 100 MB of stdout while stderr fills too, without deadlock",
    function()
      loom.run(function()
        local r = loom.run_process("head -c 1000000 /dev/zero >&2; "
          .. "head -c 100000000 /dev/zero; head -c 1000000 /dev/zero >&2")
        assert.equal(100000000, #r.stdout)
        assert.equal(2000000, #r.stderr)
      end)
    end)

  it("kills and reaps the child when cancelled", function()
    loom.run(function()
      local pidfile = os.tmpname()
      local scope = loom.move_on_after(0.2, function()
        loom.run_process({ "sh", "-c", "echo $$ > " .. pidfile
          .. "; exec sleep 30" })
      end)
      assert.is_true(scope.cancelled_caught)
      local f = io.open(pidfile)
      local pid = f:read("n")
      f:close()
      os.remove(pidfile)
      -- reaped before the Cancelled propagated: no process, no zombie
      assert.is_false(exists(pid))
      assert_clean()
    end)
  end)

  it("runs 1,000 short children in a row: no zombie, no leaked fd",
    function()
      loom.run(function()
        loom.run_process({ "true" })
        settle()
        local before = fd_list()
        for _ = 1, 1000 do
          local r = loom.run_process({ "true" })
          assert.equal(0, r.returncode)
        end
        settle()
        -- nothing new (an fd of an earlier test may have been collected)
        local had = {}
        for l in before:gmatch("[^\n]+") do had[l] = true end
        for l in fd_list():gmatch("[^\n]+") do
          assert(had[l], "leaked fd: " .. l)
        end
        assert.equal(0, zombies())
        assert_clean()
      end)
    end)

  it("rejects bad input with clear errors", function()
    loom.run(function()
      local function msg(...)
        return H.message(err_of(loom.run_process, ...))
      end
      assert.equal("bad argument #1 to 'run_process' (string or table "
        .. "expected, got nil)", msg())
      assert.equal("bad argument #1 to 'run_process' (string or table "
        .. "expected, got number)", msg(42))
      assert.equal("bad argument #1 to 'run_process' (command is empty)",
        msg({}))
      assert.equal("bad argument #1 to 'run_process' (element 2 is a number, "
        .. "not a string)", msg({ "echo", 1 }))
      assert.equal("bad argument #2 to 'run_process' (table expected, got "
        .. "string)", msg("true", "x"))
      assert.equal("bad argument #2 to 'run_process' (unknown option "
        .. "'shell')", msg("true", { shell = true }))
      assert.equal("bad argument #2 to 'run_process' (input and stdin cannot "
        .. "both be given)", msg("cat", { input = "x", stdin = "pipe" }))
      assert.equal("bad argument #2 to 'run_process' (stdout must be 'pipe', "
        .. "'inherit' or 'null', got 'file')", msg("true", { stdout = "file" }))
      assert.equal("bad argument #2 to 'run_process' (check must be a "
        .. "boolean, got string)", msg("true", { check = "yes" }))
      assert.equal("bad argument #2 to 'run_process' (env value of A must be "
        .. "a string, got table)", msg("true", { env = { A = {} } }))
      local e = err_of(loom.run_process, { "/nonexistent/cmd" })
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("ENOENT", e.code)
      assert.equal("run_process: no such file or directory "
        .. "(/nonexistent/cmd)", e.message)
      local plain = os.tmpname()   -- mode 0600: not executable
      e = err_of(loom.run_process, { plain })
      os.remove(plain)
      assert.equal("EACCES", e.code)
      e = err_of(loom.run_process, { "true" }, { cwd = "/nonexistent" })
      assert.equal("ENOENT", e.code)
      assert.equal("run_process: no such file or directory (true, cwd "
        .. "'/nonexistent')", e.message)
      -- a missing command through the shell is the shell's status 127
      e = err_of(loom.run_process, "no-such-command-here 2>/dev/null")
      assert.equal(127, e.returncode)
      assert_clean()
    end)
    assert.equal("loom.run_process: must be called from inside a loom task "
      .. "(start one with loom.run)", H.message(err_of(loom.run_process,
        "true")))
    assert.equal("loom.open_process: must be called from inside a loom task "
      .. "(start one with loom.run)", H.message(err_of(loom.open_process,
        "true")))
  end)
end)

describe("loom.open_process", function()
  it("pipes all three streams and reports the exit", function()
    loom.run(function()
      local p = loom.open_process({ "sh", "-c",
        "read x; echo got $x; echo oops >&2; exit 7" })
      assert.is_number(p.pid)
      assert.is_nil(p.returncode)
      assert.matches("^loom.Process: 0x%x+ %(pid %d+, running%)$",
        tostring(p))
      assert.matches("^loom.PipeStream: 0x%x+ %(pipe, send%-only%)$",
        tostring(p.stdin))
      p.stdin:send("abc\n")
      local out = loom.buffered(p.stdout)
      assert.equal("got abc", out:receive_until("\n", 100))
      assert.equal("oops\n", p.stderr:receive())
      assert.equal(7, p:wait())
      assert.equal(7, p.returncode)
      p:close()
      assert.equal(7, p.returncode)
      assert_clean()
    end)
  end)

  it("sets returncode as soon as the exit is seen, without wait",
    function()
      loom.run(function()
        local p <close> = loom.open_process({ "true" })
        local e = err_of(p.stdout.receive, p.stdout)
        assert.is_true(loom.is(e, loom.EndOfStream))
        loom.sleep(0.2)
        assert.equal(0, p.returncode)
      end)
      assert_clean()
    end)

  it("sends signals by name and number; terminate and kill", function()
    loom.run(function()
      local p = loom.open_process({ "sleep", "30" })
      p:send_signal("SIGUSR1")
      assert.equal(-10, p:wait())
      p:close()
      p = loom.open_process({ "sleep", "30" })
      p:send_signal(15)
      assert.equal(-15, p:wait())
      p:send_signal("SIGKILL")   -- exited: nothing to do
      p:close()
      p = loom.open_process({ "sleep", "30" })
      p:terminate()
      assert.equal(-15, p:wait())
      p:close()
      p = loom.open_process({ "sleep", "30" })
      p:kill()
      assert.equal(-9, p:wait())
      p:close()
      assert.equal("bad argument #1 to 'send_signal' (unknown signal name "
        .. "'SIGNOPE')", H.message(err_of(function()
          p:send_signal("SIGNOPE")
        end)))
      assert.equal("bad argument #1 to 'send_signal' (no such signal: 99)",
        H.message(err_of(function() p:send_signal(99) end)))
      assert.equal("bad argument #1 to 'send_signal' (signal name or number "
        .. "expected, got no value)", H.message(err_of(function()
          p:send_signal()
        end)))
      assert_clean()
    end)
  end)

  it("a child ignoring SIGTERM keeps running until killed", function()
    loom.run(function()
      local p <close> = loom.open_process({ "sh", "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.05; done" })
      assert.equal("ready\n", p.stdout:receive())
      p:terminate()
      loom.sleep(0.2)
      assert.is_nil(p.returncode)
      p:kill()
      assert.equal(-9, p:wait())
    end)
    assert_clean()
  end)

  it("writing to a child that exited raises BrokenResourceError EPIPE",
    function()
      loom.run(function()
        local p <close> = loom.open_process({ "true" })
        p:wait()
        local e = err_of(function()
          for _ = 1, 100 do p.stdin:send(("x"):rep(65536)) end
        end)
        assert.is_true(loom.is(e, loom.BrokenResourceError))
        assert.is_false(loom.is(e, loom.OSError))
        assert.equal("EPIPE", e.code)
        assert.equal("send: broken pipe", e.message)
      end)
      assert_clean()
    end)

  it("a cancelled wait does not kill; a cancelled close does", function()
    loom.run(function()
      local p = loom.open_process({ "sleep", "30" })
      loom.move_on_after(0.05, function() p:wait() end)
      assert.is_nil(p.returncode)
      assert.is_true(exists(p.pid))
      loom.move_on_after(0.05, function() p:close() end)
      assert.equal(-9, p.returncode)
      assert.is_false(exists(p.pid))
      assert_clean()
    end)
  end)

  it("<close> waits on a normal exit, kills on an error", function()
    loom.run(function()
      local pid
      do
        local p <close> = loom.open_process({ "sh", "-c", "sleep 0.05" })
        pid = p.pid
      end
      assert.is_false(exists(pid))
      local p2
      local e = err_of(function()
        local p <close> = loom.open_process({ "sleep", "30" })
        p2 = p
        error("boom")
      end)
      assert.matches("boom", tostring(e))
      assert.equal(-9, p2.returncode)
      assert.is_false(exists(p2.pid))
      assert_clean()
    end)
  end)

  it("cancels a blocked receive from a child", function()
    loom.run(function()
      local p <close> = loom.open_process({ "sleep", "30" })
      local scope = loom.move_on_after(0.05, function()
        p.stdout:receive()
      end)
      assert.is_true(scope.cancelled_caught)
      p:kill()
    end)
    assert_clean()
  end)

  it("a send blocked on a full pipe is cancellable", function()
    loom.run(function()
      local p <close> = loom.open_process({ "sleep", "30" })
      local sent = 0
      local scope = loom.move_on_after(0.1, function()
        while true do
          p.stdin:send(("x"):rep(65536))
          sent = sent + 1
        end
      end)
      assert.is_true(scope.cancelled_caught)
      assert.is_true(sent >= 1)
      -- part of the last send may be in the pipe: the sending side is broken
      local e = err_of(p.stdin.send, p.stdin, "y")
      assert.is_true(loom.is(e, loom.BrokenResourceError))
      p:kill()
    end)
    assert_clean()
  end)

  it("every call is a checkpoint in a cancelled scope", function()
    loom.run(function()
      local p <close> = loom.open_process({ "cat" })
      local calls = {
        function() loom.run_process({ "true" }) end,
        function() p:wait() end,
        function() p.stdin:send("x") end,
        function() p.stdout:receive() end,
      }
      for i, f in ipairs(calls) do
        local s = loom.cancel_scope()
        s:cancel()
        s:run(function()
          local ok, e = pcall(f)
          assert(not ok and loom.is_cancelled(e), "call " .. i)
        end)
      end
      p.stdin:send_eof()
      assert.equal(0, p:wait())
    end)
    assert_clean()
  end)

  it("waiting on a child is never taken for a deadlock", function()
    loom.run(function()
      local p = loom.open_process({ "sleep", "0.2" }, { stdout = "null",
        stdin = "null", stderr = "null" })
      assert.is_nil(p.stdout)
      assert.equal(0, p:wait())
      p:close()
    end)
  end)

  it("kills and reaps children left running when loom.run returns",
    function()
      local p
      loom.run(function()
        p = loom.open_process({ "sleep", "30" })
      end)
      p.stdin:close(); p.stdout:close(); p.stderr:close()
      assert.equal(-9, p.returncode)
      assert.is_false(exists(p.pid))
      assert.equal(0, zombies())
    end)

  it("stream directions are checked", function()
    loom.run(function()
      local p <close> = loom.open_process({ "cat" })
      assert.matches("loom.PipeStream:receive: this stream is send%-only",
        tostring(err_of(p.stdin.receive, p.stdin)))
      assert.matches("loom.PipeStream:send: this stream is receive%-only",
        tostring(err_of(p.stdout.send, p.stdout, "x")))
      p.stdin:send_eof()
      assert.is_true(loom.is(err_of(p.stdout.receive, p.stdout),
        loom.EndOfStream))
    end)
    assert_clean()
  end)
end)
