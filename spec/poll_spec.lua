-- fd readiness (poll.c): loom.wait_readable / loom.wait_writable driving
-- LuaSocket's non-blocking sockets.
local loom = require("loom")
local core = require("loom.core")
local socket = require("socket")
local H = require("helpers")

local function settle() loom.sleep(0.005) end

after_each(function()
  loom.run(settle)
  assert.same({ handles = 0 }, core.poll_stats())
end)

-- A connected LuaSocket pair, both non-blocking.
local function pair()
  local srv = assert(socket.bind("127.0.0.1", 0))
  srv:settimeout(0)
  local ip, port = srv:getsockname()
  local c = socket.tcp()
  c:settimeout(0)
  c:connect(ip, port)
  loom.wait_readable(srv)
  local s = assert(srv:accept())
  s:settimeout(0)
  loom.wait_writable(c)
  srv:close()
  return c, s
end

describe("loom.wait_readable / wait_writable", function()
  it("drives LuaSocket sockets: accept, connect, receive", function()
    loom.run(function()
      local c, s = pair()
      local got
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.wait_readable(s)    -- an object with getfd()
          got = s:receive("*l")
        end)
        loom.wait_all_tasks_blocked()
        assert.is_nil(got)
        c:send("line\n")
      end)
      assert.equal("line", got)
      c:close()
      s:close()
    end)
  end)

  it("accepts integers and integral floats", function()
    loom.run(function()
      local c, s = pair()
      local fd = c:getfd()
      assert.equal("float", math.type(fd))   -- LuaSocket on Lua 5.4
      loom.wait_writable(fd)
      loom.wait_writable(math.tointeger(fd))
      c:close()
      s:close()
    end)
  end)

  it("one reader and one writer per fd; a second waiter is busy", function()
    loom.run(function()
      local c, s = pair()
      local log, add = H.log()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.wait_readable(s)
          add("readable")
        end)
        loom.wait_all_tasks_blocked()
        loom.wait_writable(s)        -- same fd, other direction: fine
        add("writable")
        local e = H.capture_error(loom.wait_readable, s)
        assert.is_true(loom.is(e, loom.BusyResourceError))
        assert.equal("Another task is already reading from this resource",
          e.message)
        c:send("x")
      end)
      assert.same({ "writable", "readable" }, log)
      c:close()
      s:close()
    end)
  end)

  it("is a cancellable checkpoint", function()
    loom.run(function()
      local c, s = pair()
      local scope = loom.move_on_after(0.02, function()
        loom.wait_readable(s)
      end)
      assert.is_true(scope.cancelled_caught)
      settle()
      assert.same({ handles = 0 }, core.poll_stats())
      -- A ready fd still yields to others first.
      local log, add = H.log()
      loom.task_group(function(tg)
        tg:start_soon(function() add("other") end)
        loom.wait_writable(c)
        add("writable")
      end)
      assert.same({ "other", "writable" }, log)
      c:close()
      s:close()
    end)
  end)

  it("wakes a reader on hang-up", function()
    loom.run(function()
      local c, s = pair()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.wait_readable(s)
          local _, err = s:receive("*l")
          assert.equal("closed", err)
        end)
        loom.wait_all_tasks_blocked()
        c:close()
      end)
      s:close()
    end)
  end)

  it("rejects negative, closed and non-socket fds clearly", function()
    loom.run(function()
      local function msg(...) return H.message(H.capture_error(...)) end
      assert.equal("bad argument #1 to 'wait_readable' (fd must not be "
        .. "negative, got -1; a closed socket's getfd() returns -1)",
        msg(loom.wait_readable, -1))
      local c, s = pair()
      c:close()
      assert.equal("bad argument #1 to 'wait_writable' (fd must not be "
        .. "negative, got -1; a closed socket's getfd() returns -1)",
        msg(loom.wait_writable, c))
      local fd = s:getfd()
      s:close()
      local e = H.capture_error(loom.wait_readable, fd)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("EBADF", e.code)
      assert.equal("bad argument #1 to 'wait_readable' (integer fd or "
        .. "object with getfd() expected, got 1.5)",
        msg(loom.wait_readable, 1.5))
      assert.equal("bad argument #1 to 'wait_readable' (integer fd or "
        .. "object with getfd() expected, got no value)",
        msg(loom.wait_readable))
      -- A regular file cannot be polled.
      local path = os.tmpname()
      local f <close> = loom.open_file(path, "w")
      e = H.capture_error(loom.wait_readable, f.h:fileno())
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("EPERM", e.code)
      assert.equal("wait_readable: operation not permitted (fd "
        .. f.h:fileno() .. ")", e.message)
      os.remove(path)
    end)
    assert.equal("loom.wait_readable: must be called from inside a loom task "
      .. "(start one with loom.run)",
      H.message(H.capture_error(loom.wait_readable, 0)))
  end)
end)
