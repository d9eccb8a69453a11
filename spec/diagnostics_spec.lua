-- Errors a user can read: misspelt members of every loom class, unknown
-- options, table errors without __tostring, TaskFailed messages,
-- tracebacks without loom's own frames, and the task tree of a deadlock.
-- (The root task's call chain is in run_spec, the plain-coroutine message
-- in bad_input_spec.)
local loom = require("loom")
local H = require("helpers")

local function err_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return err
end

local function no_member(obj, key)
  return err_of(function() return obj[key] end)
end

describe("a misspelt member", function()
  it("names the class and suggests the closest method", function()
    loom.run(function()
      loom.task_group(function(tg)
        local where
        local err = err_of(function()
          where = H.here(); tg:start_son(function() end)
        end)
        assert.equal(where .. ": loom.TaskGroup has no method 'start_son' "
          .. "(did you mean 'start_soon'?)", err)
      end)
    end)
  end)

  it("says field when the closest name is a field", function()
    local scope = loom.cancel_scope()
    H.contains(no_member(scope, "deadlin"), "loom.CancelScope has no field "
      .. "'deadlin' (did you mean 'deadline'?)")
    H.contains(no_member(scope, "zzz"), "loom.CancelScope has no method or "
      .. "field 'zzz'")
    H.contains(no_member(loom.event(), "zzz"), "loom.Event has no method "
      .. "'zzz'")
  end)

  it("works on every class", function()
    loom.run(function()
      local send, receive = loom.channel(1)
      local listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = listener:local_address()
      local stream = loom.connect_tcp("127.0.0.1", port)
      local accepted = listener:accept()
      local cases = {
        { loom.current_task(), "loom.Task", "wiat", "wait" },
        { loom.cancel_scope(), "loom.CancelScope", "cancle", "cancel" },
        { loom.event(), "loom.Event", "sett", "set" },
        { loom.lock(), "loom.Lock", "aquire", "acquire" },
        { loom.semaphore(1), "loom.Semaphore", "relase", "release" },
        { loom.condition(), "loom.Condition", "notfy", "notify" },
        { loom.capacity_limiter(1), "loom.CapacityLimiter", "statistic",
          "statistics" },
        { send, "loom.SendChannel", "sned", "send" },
        { receive, "loom.ReceiveChannel", "recieve", "receive" },
        { listener, "loom.TCPListener", "acept", "accept" },
        { stream, "loom.TCPStream", "sendeof", "send_eof" },
        { loom.buffered(stream), "loom.BufferedStream", "receive_exact",
          "receive_exactly" },
      }
      for _, c in ipairs(cases) do
        H.contains(no_member(c[1], c[3]), ("%s has no method '%s' (did you "
          .. "mean '%s'?)"):format(c[2], c[3], c[4]))
      end
      loom.task_group(function(tg)
        H.contains(no_member(tg, "cancel_scop"), "loom.TaskGroup has no field "
          .. "'cancel_scop' (did you mean 'cancel_scope'?)")
        tg:start(function(task_status)
          H.contains(no_member(task_status, "start"), "loom.TaskStatus has no "
            .. "method 'start' (did you mean 'started'?)")
          task_status:started()
        end)
      end)
      stream:close()
      accepted:close()
      listener:close()
      send:close()
      receive:close()
    end)
  end)

  it("leaves real members, nil-valued fields and other keys alone", function()
    local sem = loom.semaphore(1)
    assert.is_nil(sem.max_value)
    assert.is_nil(sem[1])
    assert.equal("function", type(loom.event().wait))
    assert.equal(math.huge, loom.cancel_scope().deadline)
  end)
end)

describe("option tables", function()
  it("reject unknown keys", function()
    H.contains(err_of(loom.cancel_scope, { deadlin = 1 }),
      "bad argument #1 to 'cancel_scope' (unknown option 'deadlin')")
    H.contains(err_of(loom.lock, { fast = true }), "unknown option 'fast'")
    H.contains(err_of(loom.semaphore, 1, nil, { fast_aquire = true }),
      "unknown option 'fast_aquire'")
    H.contains(err_of(loom.create_tcp_listener, { port = 1 }),
      "unknown option 'port'")
    loom.run(function()
      H.contains(err_of(loom.gather, {}, { return_exception = true }),
        "bad argument #2 to 'gather' (unknown option 'return_exception')")
      H.contains(err_of(loom.gather, {}, { return_exceptions = 1 }),
        "bad argument #2 to 'gather' (return_exceptions must be a boolean, "
        .. "got number)")
    end)
  end)
end)

describe("error texts", function()
  it("render a table error without __tostring by its fields", function()
    local err = err_of(loom.run, function()
      loom.task_group(function(tg)
        tg:start_soon(function() error({ code = 42, path = "/tmp" }) end)
      end)
    end)
    H.contains(tostring(err), "|   {code = 42, path = \"/tmp\"}\n")
  end)

  it("a plain table error leaving loom.run prints its fields and traceback",
    function()
    local obj = { code = 42 }
    obj.self = obj
    local err = err_of(loom.run, function() error(obj) end)
    assert.equal(obj, err)
    assert.matches("^{code = 42, self = {%.%.%.}}\nstack traceback:\n\t",
      tostring(err))
    -- A table with a metatable of its own is left as it is.
    local mt = {}
    local owned = setmetatable({}, mt)
    err = err_of(loom.run, function() error(owned) end)
    assert.equal(mt, getmetatable(err))
  end)

  it("TaskFailed says what the task raised", function()
    local e
    local group = err_of(loom.run, function()
      loom.task_group(function(tg)
        local h = tg:create_task(function() error("disk full", 0) end)
        e = err_of(h.result, h)
      end)
    end)
    assert.is_true(loom.is(group, loom.ErrorGroup))
    assert.equal("the task raised an exception: disk full", e.message)
    assert.equal("TaskFailed: the task raised an exception: disk full",
      tostring(e))
  end)

  it("drop loom's own frames from a connection handler's traceback",
    function()
    local err = err_of(loom.run, function()
      loom.task_group(function(tg)
        local listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
        local _, port = listener:local_address()
        tg:start_soon(function()
          local _ <close> = listener
          listener:serve(function(s) error("bad request: " .. s:receive()) end)
        end)
        local c <close> = loom.connect_tcp("127.0.0.1", port)
        c:send("x")
        loom.sleep_forever()
      end)
    end)
    local text = tostring(err)
    H.contains(text, "bad request: x")
    H.contains(text, "in local 'handler'")
    assert.is_nil(text:find("lua/loom/", 1, true), text)
    assert.is_nil(text:find("[C]: in ?", 1, true), text)
  end)

  it("a deadlock lists each stuck task and where it waits", function()
    local line
    local err = err_of(loom.run, function()
      local e = loom.event()
      loom.task_group(function(tg)
        tg:start_soon(function() line = H.here(); e:wait() end)
      end)
    end)
    local head, tree = err:match("^(.-)\nthe tasks when the deadlock was "
      .. "detected:\n(.*)$")
    assert.equal("loom.run: deadlock: every task was blocked and nothing "
      .. "could wake them (they were cancelled)", head)
    assert.matches("^Task %d+ \"function [^\"]+\" %(pending%) task_group at "
      .. "[^\n]+\n└── task group %(1 task%)\n    └── Task %d+ "
      .. "\"function [^\"]+\" %(pending%) event at " .. line:gsub("%p", "%%%0")
      .. "$", tree)
  end)
end)
