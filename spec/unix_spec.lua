-- Unix domain sockets (pipe.c, stream.c, process.lua).
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")

local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error")
  return e
end

local function tmp_path()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil or os.rename(path, path) == true
end

local function assert_no_leaks()
  loom.sleep(0.005)
  assert.same({ streams = 0, listeners = 0, closing = 0, files = 0,
                rbuf_bytes = 0, write_queue_bytes = 0 }, core.pipe_stats())
end

describe("loom unix sockets", function()
  -- Nothing of this area left alive after each test.
  after_each(H.assert_no_child_leftovers)

  it("connect, accept, echo both ways, addresses and the socket file",
    function()
      loom.run(function()
        local path = tmp_path()
        local l = loom.create_unix_listener{ path = path }
        assert.equal(path, l:local_address())
        assert.equal(("loom.UnixListener: %s (listening on %s)")
          :format(tostring(l):match("0x%x+"), path), tostring(l))
        assert.is_true(exists(path))
        loom.task_group(function(tg)
          tg:start_soon(function()
            local s <close> = l:accept()
            assert.equal(path, s:local_address())
            assert.equal("", s:remote_address())
            s:send(s:receive() .. "!")
          end)
          local c <close> = loom.connect_unix(path)
          assert.equal(path, c:remote_address())
          assert.matches("^loom.UnixStream: 0x%x+ %(%(unnamed%) %-> "
            .. path:gsub("%p", "%%%0") .. "%)$", tostring(c))
          c:send("ping")
          assert.equal("ping!", c:receive())
          assert.is_true(loom.is(err_of(c.receive, c), loom.EndOfStream))
        end)
        l:close()
        l:close()
        assert.is_false(exists(path))
        assert_no_leaks()
      end)
    end)

  it("serve runs a handler per connection; buffered works", function()
    loom.run(function()
      local path = tmp_path()
      local l <close> = loom.create_unix_listener{ path = path, mode = 384 }
      local f = io.popen("stat -c %a " .. path)
      assert.equal("600", f:read("l"))
      f:close()
      loom.task_group(function(tg)
        tg:start_soon(l.serve, l, function(s)
          local b = loom.buffered(s)
          local line = b:receive_until("\n", 100)
          b:send(line:upper() .. "\n")
        end)
        for i = 1, 3 do
          local c <close> = loom.buffered(loom.connect_unix(path))
          c:send("hello " .. i .. "\n")
          assert.equal("HELLO " .. i, c:receive_until("\n", 100))
        end
        tg.cancel_scope:cancel()
      end)
    end)
    loom.run(assert_no_leaks)
  end)

  it("replaces a stale socket file, refuses any other file", function()
    loom.run(function()
      local path = tmp_path()
      local l1 = loom.create_unix_listener{ path = path }
      -- a stale socket: another listener takes the path over
      local l2 = loom.create_unix_listener{ path = path }
      l1:close()
      assert.is_true(exists(path))  -- l1 does not remove l2's file
      local c = loom.connect_unix(path)
      local s = l2:accept()
      c:close(); s:close(); l2:close()
      assert.is_false(exists(path))
      local f = io.open(path, "w")
      f:write("data")
      f:close()
      local e = err_of(loom.create_unix_listener, { path = path })
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("EADDRINUSE", e.code)
      assert.equal("create_unix_listener: a file that is not a socket "
        .. "exists at " .. path, e.message)
      os.remove(path)
      assert_no_leaks()
    end)
  end)

  it("accepts Linux abstract names", function()
    loom.run(function()
      local name = "\0loom-test-" .. tostring({}):match("0x%x+")
      local l <close> = loom.create_unix_listener{ path = name }
      assert.equal(name, l:local_address())
      assert.matches("listening on @loom%-test%-", tostring(l))
      local c <close> = loom.connect_unix(name)
      local s <close> = l:accept()
      c:send("abstract")
      assert.equal("abstract", s:receive())
    end)
    loom.run(assert_no_leaks)
  end)

  it("peer gone: BrokenResourceError on send", function()
    loom.run(function()
      local path = tmp_path()
      local l <close> = loom.create_unix_listener{ path = path }
      local c <close> = loom.connect_unix(path)
      l:accept():close()
      local e = err_of(function()
        for _ = 1, 100 do c:send(("x"):rep(65536)) end
      end)
      assert.is_true(loom.is(e, loom.BrokenResourceError))
      assert.is_truthy(e.code == "EPIPE" or e.code == "ECONNRESET")
    end)
    loom.run(assert_no_leaks)
  end)

  it("send_eof half-closes: the peer reads the end and still answers",
    function()
      loom.run(function()
        local path = tmp_path()
        local l <close> = loom.create_unix_listener{ path = path }
        local c <close> = loom.connect_unix(path)
        local s <close> = l:accept()
        c:send("question")
        c:send_eof()
        assert.equal("question", s:receive())
        assert.is_true(loom.is(select(2, pcall(s.receive, s)),
          loom.EndOfStream))
        s:send("answer")
        assert.equal("answer", c:receive())
        assert.is_true(loom.is(select(2, pcall(c.send, c, "x")),
          loom.ClosedResourceError))
      end)
      loom.run(assert_no_leaks)
    end)

  it("connect errors and bad input", function()
    loom.run(function()
      local path = tmp_path()
      local e = err_of(loom.connect_unix, path)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("ENOENT", e.code)
      assert.equal("connect_unix: no such file or directory (" .. path .. ")",
        e.message)
      e = err_of(loom.connect_unix, "/tmp/" .. ("x"):rep(200))
      assert.equal("ENAMETOOLONG", e.code)
      assert.equal("connect_unix: path too long (205 bytes; at most 107)",
        e.message)
      e = err_of(loom.create_unix_listener, { path = "/" .. ("y"):rep(120) })
      assert.equal("ENAMETOOLONG", e.code)
      local function msg(f, ...) return H.message(err_of(f, ...)) end
      assert.equal("bad argument #1 to 'connect_unix' (string expected, got "
        .. "nil)", msg(loom.connect_unix))
      assert.equal("bad argument #1 to 'connect_unix' (path is empty)",
        msg(loom.connect_unix, ""))
      assert.equal("bad argument #1 to 'connect_unix' (path contains a NUL)",
        msg(loom.connect_unix, "/tmp/a\0b"))
      assert.equal("bad argument #1 to 'create_unix_listener' (table "
        .. "expected, got string)", msg(loom.create_unix_listener, "/tmp/x"))
      assert.equal("bad argument #1 to 'create_unix_listener' (path must be "
        .. "a string, got nil)", msg(loom.create_unix_listener, {}))
      assert.equal("bad argument #1 to 'create_unix_listener' (unknown "
        .. "option 'port')", msg(loom.create_unix_listener,
          { path = "/tmp/x", port = 1 }))
      assert.equal("bad argument #1 to 'create_unix_listener' (mode must be "
        .. "an integer in 0..4095 (0o7777), got -1)",
        msg(loom.create_unix_listener, { path = "/tmp/x", mode = -1 }))
      assert_no_leaks()
    end)
  end)

  it("connect_unix is a checkpoint", function()
    loom.run(function()
      local path = tmp_path()
      local l <close> = loom.create_unix_listener{ path = path }
      local s = loom.cancel_scope()
      s:cancel()
      s:run(function()
        local ok, e = pcall(loom.connect_unix, path)
        assert.is_false(ok)
        assert.is_true(loom.is_cancelled(e))
      end)
      -- nothing connected: the listener has no connection waiting
      local t = loom.move_on_after(0.02, function() l:accept() end)
      assert.is_true(t.cancelled_caught)
    end)
    loom.run(assert_no_leaks)
  end)

  it("accept and receive are cancellable", function()
    loom.run(function()
      local path = tmp_path()
      local l <close> = loom.create_unix_listener{ path = path }
      local scope = loom.move_on_after(0.02, function() l:accept() end)
      assert.is_true(scope.cancelled_caught)
      local c <close> = loom.connect_unix(path)
      local s <close> = l:accept()
      scope = loom.move_on_after(0.02, function() s:receive() end)
      assert.is_true(scope.cancelled_caught)
      c:send("still works")
      assert.equal("still works", s:receive())
    end)
    loom.run(assert_no_leaks)
  end)
end)
