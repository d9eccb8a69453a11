-- loom.host_group: task groups owned by host code. Isolating by default
-- (errors go to the error hook, siblings keep running), fail_fast on
-- request, close(grace) cancels and settles. Scenarios with a configured
-- error hook run in fresh processes (configure is refused once tasks ran).

local loom = require("loom")
local H = require("helpers")
local fresh = require("embed.fresh")

describe("host groups", function()
  it("isolating: each error reaches on_error once, with the task handle and "
    .. "the failing coroutine's traceback; siblings keep running", function()
      local out = fresh.ok([[
        local seen = {}
        loom.configure{ on_error = function(err, task, tb)
          seen[#seen + 1] = { err = err, task = task, tb = tb }
        end }
        local hg = loom.host_group("scripts")
        local ticks = 0
        hg:start_soon(function()
          while true do ticks = ticks + 1; loom.next_frame() end
        end)
        local h = hg:create_task(function()
          loom.next_frame()
          local function deep() error("script failed") end
          deep()
        end)
        h.name = "door script"
        for _ = 1, 5 do loom.step() end
        print(#seen, seen[1].task == h, seen[1].task.name, h:status())
        print((tostring(seen[1].err):gsub("^[^:]+:%d+: ", "")))
        print(seen[1].tb:find("in upvalue 'deep'", 1, true) ~= nil
          or seen[1].tb:find("in local 'deep'", 1, true) ~= nil)
        print(ticks, hg:alive())
        print(hg:close())
      ]])
      assert.are.equal("1\ttrue\tdoor script\tfailed\nscript failed\ntrue\n"
        .. "5\t1\ntrue\n", out)
    end)

  it("the default hook prints the error and its traceback to stderr",
    function()
      local out, err, code = fresh.run([[
        local hg = loom.host_group("bg")
        local h = hg:create_task(function() error("kaboom") end)
        h.name = "worker"
        loom.step()
        print("still running", hg:alive())
      ]])
      assert.are.equal(0, code)
      assert.are.equal("still running\t0\n", out)
      assert.truthy(err:find("^loom: unhandled error in task worker: "
        .. "[^\n]*kaboom\nstack traceback:\n"), err)
      assert.truthy(err:find("in function 'error'", 1, true), err)
    end)

  it("on_error = \"raise\": each step raises at most one error, none is "
    .. "dropped", function()
      local out = fresh.ok([[
        loom.configure{ on_error = "raise" }
        local hg = loom.host_group("g")
        for i = 1, 3 do hg:start_soon(function() error("e" .. i, 0) end) end
        hg:start_soon(function() loom.next_frame(); print("sibling ran") end)
        for _ = 1, 4 do print(pcall(loom.step)) end
        print(hg:alive())
      ]])
      assert.are.equal("false\te1\nsibling ran\nfalse\te2\nfalse\te3\n"
        .. "true\t0\tnil\n0\n", out)
    end)

  it("an error raised inside on_error is printed, never propagated",
    function()
      local out, err, code = fresh.run([[
        loom.configure{ on_error = function(e) error("hook broke: " .. e, 0) end }
        local hg = loom.host_group("g")
        hg:start_soon(function() error("first", 0) end)
        hg:start_soon(function() loom.next_frame(); print("sibling ok") end)
        print(pcall(loom.step))
        loom.step()
      ]])
      assert.are.equal(0, code)
      assert.are.equal("true\t0\tnil\nsibling ok\n", out)
      assert.are.equal("loom: error in the on_error hook: hook broke: first\n",
        err)
    end)

  it("on_error runs as part of the step: it cannot step; close only "
    .. "cancels there", function()
      local out = fresh.ok([[
        local other
        loom.configure{ on_error = function()
          print(pcall(loom.step))
          print("close in hook", other:close(), other:alive())
        end }
        local hg = loom.host_group("g")
        other = loom.host_group("other")
        other:start_soon(function()
          local _ <close> = setmetatable({}, { __close = function()
            print("other cleaned up") end })
          loom.sleep_forever()
        end)
        hg:start_soon(function() loom.checkpoint(); error("x", 0) end)
        loom.step()
        print("next step")
        loom.step()
        print(other:alive(), other:close())
      ]])
      assert.are.equal("false\tloom.step: cannot be called from inside a "
        .. "task or while loom.run is running\nclose in hook\tfalse\t1\n"
        .. "next step\nother cleaned up\n0\ttrue\n", out)
    end)

  it("fail_fast: the first error cancels the group; one ErrorGroup reaches "
    .. "on_error after every child finished, then the group is closed",
    function()
      local out = fresh.ok([[
        local got = {}
        loom.configure{ on_error = function(e, t) got[#got + 1] = { e, t } end }
        local hg = loom.host_group("level", { fail_fast = true })
        hg:start_soon(function()
          local ok, e = pcall(loom.sleep, 10)
          print("sleeper", loom.is_cancelled(e))
          loom.cancel_shielded_checkpoint()
          error("cleanup failed", 0)
        end)
        hg:start_soon(function() loom.checkpoint(); error("boom", 0) end)
        loom.step()
        print(#got, hg:alive())
        local eg, t = got[1][1], got[1][2]
        print(loom.is(eg, loom.ErrorGroup), t, #eg.errors, eg.errors[1],
          eg.errors[2])
        print(pcall(hg.start_soon, hg, print))
        print(hg:close(), tostring(hg):match("%((.*)%)"))
      ]])
      assert.are.equal("sleeper\ttrue\n1\t0\n"
        .. "true\tnil\t2\tboom\tcleanup failed\n"
        .. "false\tThis task group is not active; no new tasks can be "
        .. "started.\ntrue\tclosed, 0 alive\n", out)
    end)

  it("fail_fast: print says 'unhandled error in host group <name>'",
    function()
      local _, err, code = fresh.run([[
        local hg = loom.host_group("arena", { fail_fast = true })
        hg:start_soon(function() error("lost", 0) end)
        loom.step()
      ]])
      assert.are.equal(0, code)
      assert.truthy(err:find("^loom: unhandled error in host group arena: "
        .. "ErrorGroup: unhandled errors in a task group %(1 sub%-error%)"),
        err)
    end)

  it("close(0) cancels tasks parked on sleeps, events, channels, futures, "
    .. "TCP receives and DNS and runs their __close handlers", function()
      local hg = loom.host_group("level")
      local log, add = H.log()
      local function closer(name)
        return setmetatable({}, { __close = function() add(name) end })
      end
      local ev = loom.event()
      local _, recv = loom.channel(0)
      local f = loom.future()
      local listener
      hg:start_soon(function()
        local _ <close> = closer("sleep"); loom.sleep(100) end)
      hg:start_soon(function()
        local _ <close> = closer("event"); ev:wait() end)
      hg:start_soon(function()
        local _ <close> = closer("channel"); recv:receive() end)
      hg:start_soon(function()
        local _ <close> = closer("future"); f:wait() end)
      hg:start_soon(function()
        local _ <close> = closer("frame")
        while true do loom.next_frame() end
      end)
      hg:start_soon(function()
        local _ <close> = closer("dns")
        while true do loom.getaddrinfo("localhost", 80) end
      end)
      hg:start_soon(function()
        listener = loom.create_tcp_listener{ local_host = "127.0.0.1" }
        local _, port = listener:local_address()
        local s <close> = loom.connect_tcp("127.0.0.1", port)
        local _ <close> = closer("tcp")
        s:receive()
      end)
      for _ = 1, 50 do
        loom.step()
        if listener then break end
      end
      -- let the connection establish
      local t0 = loom.now()
      while loom.now() - t0 < 0.2 do loom.step() end
      assert.are.equal(7, hg:alive(), table.concat(log, ","))
      assert.is_true(hg:close())
      table.sort(log)
      assert.are.same({ "channel", "dns", "event", "frame", "future", "sleep",
        "tcp" }, log)
      assert.are.equal(0, hg:alive())
      listener:close()
      assert.is_false(f:done())
    end)

  it("close(grace) runs passes until the tasks finished; a false leaves "
    .. "them to later steps", function()
      local hg = loom.host_group("slow")
      local log, add = H.log()
      hg:start_soon(function()
        local ok = pcall(loom.sleep, 100)
        assert(not ok)
        loom.cancel_scope({ shield = true }):run(function()
          loom.sleep(0.05)
        end)
        add("cleaned")
      end)
      loom.step()
      assert.is_false(hg:close(0))
      assert.are.equal(1, hg:alive())
      assert.are.same({}, log)
      local hg2 = loom.host_group("slow2")
      hg2:start_soon(function()
        local ok = pcall(loom.sleep, 100)
        assert(not ok)
        loom.cancel_scope({ shield = true }):run(function()
          loom.sleep(0.02)
        end)
        add("cleaned2")
      end)
      loom.step()
      assert.is_true(hg2:close(10))
      assert.are.same({ "cleaned2" }, log)
      -- the first group's task keeps being resumed by steps
      local t0 = loom.now()
      while hg:alive() > 0 and loom.now() - t0 < 5 do loom.step() end
      assert.are.same({ "cleaned2", "cleaned" }, log)
      assert.is_true(hg:close())
    end)

  it("close(grace) waits for __close handlers that suspend", function()
    local hg = loom.host_group("yielding cleanup")
    local log, add = H.log()
    for i = 1, 3 do
      hg:start_soon(function()
        local _ <close> = setmetatable({}, { __close = function()
          loom.cancel_scope({ shield = true }):run(function()
            loom.sleep(0.005 * i)
          end)
          add("closed " .. i)
        end })
        loom.sleep_forever()
      end)
    end
    loom.step()
    assert.is_true(hg:close(10))
    assert.are.same({ "closed 1", "closed 2", "closed 3" }, log)
  end)

  it("errors of children left alive by a false close still reach on_error",
    function()
      local out = fresh.ok([[
        loom.configure{ on_error = function(e, t) print("hook", t.name, e) end }
        local hg = loom.host_group("g")
        local h = hg:create_task(function()
          pcall(loom.sleep_forever)
          loom.cancel_scope{ shield = true }:run(function() loom.sleep(0.01) end)
          error("late failure", 0)
        end)
        h.name = "straggler"
        loom.step()
        print(hg:close(0), hg:alive())
        while hg:alive() > 0 do loom.step() end
        print(hg:close(), hg:alive())
      ]])
      assert.are.equal("false\t1\nhook\tstraggler\tlate failure\n"
        .. "true\t0\n", out)
    end)

  it("after close: spawning raises, closing again returns alive() == 0",
    function()
      local hg = loom.host_group("done")
      assert.is_true(hg:close())
      local err = H.capture_error(function() hg:start_soon(print) end)
      assert.are.equal("This task group is not active; no new tasks can be "
        .. "started.", H.first_line(err))
      err = H.capture_error(function() hg:create_task(print) end)
      assert.are.equal("This task group is not active; no new tasks can be "
        .. "started.", H.first_line(err))
      assert.is_true(hg:close())
    end)

  it("alive() counts children not finished, started or not", function()
    local hg = loom.host_group("count")
    hg:start_soon(function() loom.next_frame() end)
    hg:start_soon(function() end)
    assert.are.equal(2, hg:alive())
    loom.step()
    assert.are.equal(1, hg:alive())
    loom.step()
    assert.are.equal(0, hg:alive())
    assert.is_true(hg:close())
  end)

  it("fields, methods, cancel(reason) and tostring", function()
    local hg = loom.host_group("fields")
    assert.are.equal("fields", hg.name)
    assert.truthy(tostring(hg.cancel_scope):find("^loom.CancelScope"))
    assert.truthy(tostring(hg):find('^loom.HostGroup: 0x%x+ "fields" '
      .. '%(open, 0 alive%)$'))
    local h = hg:create_task(function() loom.sleep_forever() end)
    assert.truthy(tostring(h):find("^loom.Task"))
    assert.is_nil(h:parent())
    -- many spawns change nothing a host group answers
    for _ = 1, 20 do hg:start_soon(function() end) end
    assert.are.equal("fields", hg.name)
    assert.truthy(tostring(hg):find('^loom.HostGroup: 0x%x+ "fields" '))
    loom.step()
    hg:cancel("level unloaded")
    loom.step()
    assert.are.equal("cancelled", h:status())
    local ok, e = pcall(h.result, h)
    assert.is_false(ok)
    H.contains(select(2, pcall(function() return hg.nonexistent end)),
      "loom.HostGroup has no method 'nonexistent'")
    assert.is_true(hg:close())
    assert.is_true(hg.cancel_scope.cancel_called)
    assert.truthy(tostring(e))
  end)

  it("loom.task_tree() shows host groups and their tasks", function()
    local hg = loom.host_group("level 1")
    local a = hg:create_task(function() while true do loom.next_frame() end end)
    a.name = "guard"
    local b = hg:create_task(function()
      loom.task_group(function(tg)
        local c = tg:create_task(function() loom.sleep(10) end)
        c.name = "minion"
        loom.sleep(5)
      end)
    end)
    b.name = "boss"
    loom.step()
    local tree = loom.task_tree()
    assert.is_nil(tree.root)
    assert.are.equal(1, #tree.host_groups)
    assert.are.equal("level 1", tree.host_groups[1].name)
    assert.are.equal(hg, tree.host_groups[1].group)
    local text = tostring(tree):gsub(" at [^\n]*", "")
    assert.are.equal(("host group \"level 1\" (2 tasks)\n"
      .. "├── Task %d \"guard\" (pending) next_frame\n"
      .. "└── Task %d \"boss\" (pending) sleep\n"
      .. "    └── task group (1 task)\n"
      .. "        └── Task %d \"minion\" (pending) sleep")
      :format(a.id, b.id, b.id + 1), text)
    assert.is_true(hg:close())
    assert.are.equal("(no loom run in progress)", tostring(loom.task_tree()))
  end)

  it("loom.run is refused while a host group is open; host_group is "
    .. "refused inside loom.run", function()
      local hg = loom.host_group("open")
      local err = H.capture_error(loom.run, function() end)
      assert.are.equal("loom.run: the runtime is driven by the host (a host "
        .. "group is open); use loom.step", H.first_line(err))
      hg:close()
      err = H.capture_error(loom.run, function() loom.host_group("x") end)
      assert.are.equal("loom.host_group: cannot be used while loom.run is "
        .. "running (use loom.task_group inside it)", H.first_line(err))
    end)

  it("bad input", function()
    local function msg(f) return H.message(H.capture_error(f)) end
    assert.are.equal("bad argument #1 to 'host_group' (string expected, got "
      .. "no value)", msg(function() loom.host_group() end))
    assert.are.equal("bad argument #1 to 'host_group' (string expected, got "
      .. "number)", msg(function() loom.host_group(5) end))
    assert.are.equal("bad argument #2 to 'host_group' (fail_fast must be a "
      .. "boolean, got string)",
      msg(function() loom.host_group("x", { fail_fast = "yes" }) end))
    assert.are.equal("bad argument #2 to 'host_group' (unknown option "
      .. "'isolate' (expected 'fail_fast'))",
      msg(function() loom.host_group("x", { isolate = true }) end))
    assert.are.equal("bad argument #2 to 'host_group' (table expected, got "
      .. "string)", msg(function() loom.host_group("x", "y") end))
    local hg = loom.host_group("g")
    assert.are.equal("bad argument #1 to 'close' (grace must not be "
      .. "negative)", msg(function() hg:close(-1) end))
    assert.are.equal("bad argument #1 to 'close' (grace is NaN)",
      msg(function() hg:close(0 / 0) end))
    assert.are.equal("bad argument #1 to 'start_soon' (function expected, "
      .. "got no value)", msg(function() hg:start_soon() end))
    assert.is_true(hg:close())
  end)

  it("lua_close closes the host groups and runs their __close handlers",
    function()
      local out = fresh.ok([[
        local hg = loom.host_group("left open")
        hg:start_soon(function()
          local _ <close> = setmetatable({}, { __close = function(_, e)
            print("closed", loom.is_cancelled(e)) end })
          loom.sleep_forever()
        end)
        loom.step()
        print("exiting")
      ]])
      assert.are.equal("exiting\nclosed\ttrue\n", out)
    end)
end)
