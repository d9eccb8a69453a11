-- The C classes' shared glue (csrc/class.c): every loom.* metatable is
-- named and printable, a method is found by a plain table look-up, a
-- misspelt one raises "did you mean" blaming the user's line, and errors
-- from libuv codes and non-callable arguments read the same everywhere.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")

local function loom_metatables()
  local list = {}
  for k, mt in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^loom%.") and type(mt) == "table" then
      list[#list + 1] = { name = k, mt = mt }
    end
  end
  table.sort(list, function(a, b) return a.name < b.name end)
  return list
end

local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

describe("class registration", function()
  it("names every loom.* metatable and gives it __tostring", function()
    local list = loom_metatables()
    assert.is_true(#list >= 30, "only " .. #list .. " loom.* metatables")
    for _, c in ipairs(list) do
      assert.equal(c.name, rawget(c.mt, "__name"))
      assert.equal("function", type(rawget(c.mt, "__tostring")),
        c.name .. " has no __tostring")
    end
  end)

  it("gives the core's own classes __tostring too", function()
    local reg = debug.getregistry()
    for _, name in ipairs({ "loom.Task", "loom.TaskGroup", "loom.TaskStatus",
                            "loom.CancelScope", "loom.HostGroup",
                            "loom.Runtime" }) do
      local mt = reg[name]
      assert.equal("table", type(mt), name .. " is not registered")
      assert.equal(name, rawget(mt, "__name"))
      assert.equal("function", type(rawget(mt, "__tostring")),
        name .. " has no __tostring")
    end
    -- the runtime and a task status print as "<class>: <address>"
    local rt_mt = reg["loom.Runtime"]
    assert.matches("^loom%.Runtime: 0x%x+$",
      rt_mt.__tostring(setmetatable({}, { __name = "loom.Runtime" })))
    local status_str
    loom.run(function()
      loom.task_group(function(tg)
        tg:start(function(task_status)
          status_str = tostring(task_status)
          task_status:started()
        end)
      end)
    end)
    assert.matches("^loom%.TaskStatus: 0x%x+$", status_str)
  end)

  it("prints an internal object as '<class>: <address>'", function()
    local mt = debug.getregistry()["loom.SignalState"]
    local s = mt.__tostring(setmetatable({}, { __name = "loom.SignalState" }))
    assert.matches("^loom%.SignalState: 0x%x+$", s)
  end)

  it("finds methods of a class without properties by a table hit", function()
    loom.run(function()
      local send, receive = loom.channel(0)
      local cases = {
        { loom.event(), "event_methods", "wait" },
        { loom.lock(), "lock_methods", "acquire" },
        { loom.condition(), "condition_methods", "notify" },
        { send, "send_channel_methods", "send" },
        { receive, "receive_channel_methods", "receive" },
      }
      for _, c in ipairs(cases) do
        local mt = getmetatable(c[1])
        local index = rawget(mt, "__index")
        assert.equal("table", type(index), mt.__name)
        assert.equal(core[c[2]], index)
        assert.equal("function", type(rawget(index, c[3])))
        assert.equal(rawget(index, c[3]), c[1][c[3]])
        -- the methods table's own metatable holds the fallback
        assert.equal("function", type(getmetatable(index).__index))
      end
      send:close()
      receive:close()
    end)
  end)

  it("keeps a C __index for classes with properties", function()
    local sem = loom.semaphore(2, 3)
    local mt = getmetatable(sem)
    assert.equal("function", type(rawget(mt, "__index")))
    assert.equal(core.semaphore_methods.acquire_nowait, sem.acquire_nowait)
    assert.equal(2, sem.value)
    assert.equal(3, sem.max_value)
    local lim = loom.capacity_limiter(4)
    assert.equal("function", type(rawget(getmetatable(lim), "__index")))
    assert.equal(4, lim.total_tokens)
  end)

  it("raises 'did you mean' for a misspelt method, blaming the caller's "
    .. "line", function()
    local ev = loom.event()
    local where
    local err = err_of(function()
      where = H.here(); return ev.wiat
    end)
    assert.equal(where .. ": loom.Event has no method 'wiat' (did you mean "
      .. "'wait'?)", err)
    err = err_of(function() return loom.lock().zzz end)
    assert.matches("loom.Lock has no method 'zzz'$", err)
    assert.is_nil(err:find("did you mean", 1, true))
    -- the same through the exported methods table
    H.contains(err_of(function() return core.event_methods.sett end),
      "loom.Event has no method 'sett' (did you mean 'set'?)")
  end)

  it("suggests a host group's methods and keeps its fields", function()
    local hg = loom.host_group("frame")
    local where
    local err = err_of(function()
      where = H.here(); return hg.strat_soon
    end)
    assert.equal(where .. ": loom.HostGroup has no method 'strat_soon' "
      .. "(did you mean 'start_soon'?)", err)
    assert.equal("frame", hg.name)
    assert.equal("loom.CancelScope", getmetatable(hg.cancel_scope).__name)
    assert.is_nil(hg[1])
    hg:close()
  end)

  it("leaves non-method keys of a methods table nil", function()
    local methods = getmetatable(loom.event()).__index
    assert.is_nil(methods[1])
    assert.is_nil(methods.__close)
    assert.is_nil(methods[true])
    assert.is_nil(loom.event()[42])
  end)

  it("suggests methods of every converted class", function()
    loom.run(function()
      local listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local sock = loom.create_udp_socket{ local_host = "127.0.0.1" }
      local cases = {
        { listener, "loom.TCPListener", "acept", "accept" },
        { sock, "loom.UDPSocket", "sendto", "send_to" },
        { loom.future(), "loom.Future", "dne", "done" },
      }
      for _, c in ipairs(cases) do
        H.contains(err_of(function() return c[1][c[3]] end),
          ("%s has no method '%s' (did you mean '%s'?)"):format(c[2], c[3],
            c[4]))
      end
      sock:close()
      listener:close()
    end)
  end)
end)

describe("OSError from a libuv code", function()
  it("reads 'op: message (where)' with the libuv code name", function()
    loom.run(function()
      local err = H.raises(loom.OSError, loom.wait_readable, 1000)
      assert.equal("wait_readable: bad file descriptor (fd 1000)",
        err.message)
      assert.equal("EBADF", err.code)
      err = H.raises(loom.OSError, loom.fs.stat, "/nonexistent/loom-class")
      assert.equal("ENOENT", err.code)
      assert.equal("/nonexistent/loom-class", err.path)
      assert.equal("stat: no such file or directory (/nonexistent/loom-class)",
        err.message)
    end)
  end)
end)

describe("callable arguments", function()
  it("accept a table with __call and reject other values", function()
    local got
    local callable = setmetatable({}, { __call = function(_, v) got = v end })
    loom.run(callable, 7)
    assert.equal(7, got)
    assert.equal("bad argument #1 to 'run' (function expected, got number)",
      err_of(loom.run, 42))
    assert.equal("bad argument #1 to 'run' (function expected, got no "
      .. "value)", err_of(loom.run))
    local where
    local err = err_of(function()
      where = H.here(); loom.run({})
    end)
    assert.equal(where .. ": bad argument #1 to 'run' (function expected, "
      .. "got table)", err)
  end)
end)

describe("arguments checked on one side", function()
  it("fs path calls name the user's function and line from C", function()
    loom.run(function()
      local where
      local err = err_of(function()
        where = H.here(); loom.fs.stat("")
      end)
      assert.equal(where .. ": bad argument #1 to 'stat' (path is empty)", err)
      H.contains(err_of(loom.fs.readdir, "a\0b"),
        "bad argument #1 to 'readdir' (path contains a NUL)")
      H.contains(err_of(loom.fs.rename, "a", 3),
        "bad argument #2 to 'rename' (string expected, got number)")
      H.contains(err_of(loom.fs.mkdtemp),
        "bad argument #1 to 'mkdtemp' (string expected, got no value)")
      -- open_file: path and mode checked by fs.c, before the task check
      err = err_of(function()
        where = H.here(); loom.open_file("/tmp/x", "r\0")
      end)
      assert.equal(where .. ": bad argument #2 to 'open_file' (invalid mode)",
        err)
      H.contains(err_of(loom.open_file, "/tmp/x", 5),
        "bad argument #2 to 'open_file' (string expected, got number)")
      H.contains(err_of(loom.open_file, "", "r"),
        "bad argument #1 to 'open_file' (path is empty)")
    end)
  end)

  it("connect_unix's path is checked in C, blaming the user's line",
    function()
    loom.run(function()
      local where
      local err = err_of(function()
        where = H.here(); loom.connect_unix("")
      end)
      assert.equal(where .. ": bad argument #1 to 'connect_unix' (path is "
        .. "empty)", err)
      err = err_of(function()
        where = H.here(); loom.connect_unix(42)
      end)
      assert.equal(where .. ": bad argument #1 to 'connect_unix' (string "
        .. "expected, got number)", err)
    end)
  end)
end)
