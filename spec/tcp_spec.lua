-- TCP streams and listeners (tcp.c, net.lua), on 127.0.0.1 only.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")
local err_of = H.capture_error

local HOST = "127.0.0.1"

-- Let libuv run its close callbacks (a blocked wait polls the loop).
local function settle()
  loom.sleep(0.005)
end

-- A listener plus both ends of one connection.
local function pair()
  local l = loom.create_tcp_listener{ local_host = HOST }
  local _, port = l:local_address()
  local c = loom.connect_tcp(HOST, port)
  local s = l:accept()
  return l, c, s, port
end

local function free_port()
  local l = loom.create_tcp_listener{ local_host = HOST }
  local _, port = l:local_address()
  l:close()
  return port
end

-- Every TCP handle closed and freed, no libuv request pending.
local function assert_no_leaks()
  settle()
  local st = core.tcp_stats()
  assert.same({ streams = 0, listeners = 0, closing = 0, active_reqs = 0,
                rbuf_bytes = 0, write_queue_bytes = 0 }, st)
end

-- Start a task that sends 64 KiB chunks to `s` until a send blocks (the
-- peer does not read). Returns its handle, a function giving the bytes
-- whose send returned, and one giving the error that ended the sender
-- (Cancelled is re-raised: the task ends "cancelled").
local CHUNK = string.rep("x", 65536)
local function fill(tg, s)
  local sent, err = 0, nil
  local h = tg:start_soon(function()
    local ok, e = pcall(function()
      while true do
        s:send(CHUNK)
        sent = sent + #CHUNK
      end
    end)
    if loom.is_cancelled(e) then error(e, 0) end
    err = not ok and e or nil
  end)
  loom.wait_all_tasks_blocked()
  return h, function() return sent end, function() return err end
end

local function receive_all(s)
  local parts = {}
  while true do
    local ok, d = pcall(s.receive, s)
    if not ok then
      assert.is_true(loom.is(d, loom.EndOfStream))
      return table.concat(parts)
    end
    parts[#parts + 1] = d
  end
end

describe("loom TCP listeners", function()
  it("bind port 0 and report the bound address", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = HOST, local_port = 0 }
      local host, port = l:local_address()
      assert.equal(HOST, host)
      assert.is_true(math.type(port) == "integer" and port > 0)
      assert.equal(("loom.TCPListener: %s (listening on 127.0.0.1:%d)")
        :format(tostring(l):match("0x%x+"), port), tostring(l))
      l:close()
      l:close()  -- idempotent
      assert.matches("%(closed%)$", tostring(l))
      assert_no_leaks()
    end)
  end)

  it("raise OSError EADDRINUSE for a port in use", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = HOST }
      local _, port = l:local_address()
      local e = err_of(loom.create_tcp_listener,
        { local_host = HOST, local_port = port })
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("EADDRINUSE", e.code)
      assert.equal(("create_tcp_listener: address already in use "
        .. "(127.0.0.1:%d)"):format(port), e.message)
      assert.equal("OSError: " .. e.message, tostring(e))
      l:close()
      assert_no_leaks()
    end)
  end)

  it("accept connections in order and give both addresses", function()
    loom.run(function()
      local l, c, s, port = pair()
      local ch, cp = c:local_address()
      local rh, rp = c:remote_address()
      assert.same({ HOST, port }, { rh, rp })
      assert.same({ ch, cp }, { s:remote_address() })
      assert.same({ HOST, port }, { s:local_address() })
      assert.equal(("loom.TCPStream: %s (127.0.0.1:%d -> 127.0.0.1:%d)")
        :format(tostring(c):match("0x%x+"), cp, port), tostring(c))
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("closing a listener wakes a blocked accept with ClosedResourceError",
    function()
      loom.run(function()
        local l = loom.create_tcp_listener{ local_host = HOST }
        local got
        loom.task_group(function(tg)
          tg:start_soon(function() got = err_of(l.accept, l) end)
          loom.wait_all_tasks_blocked()
          l:close()
        end)
        assert.is_true(loom.is(got, loom.ClosedResourceError))
        assert.equal("accept: the listener was closed by another task",
          got.message)
        local e = err_of(l.accept, l)
        assert.is_true(loom.is(e, loom.ClosedResourceError))
        assert.equal("accept: the listener is closed", e.message)
        assert_no_leaks()
      end)
    end)

  it("allow one accept at a time (BusyResourceError)", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = HOST }
      loom.task_group(function(tg)
        tg:start_soon(function() pcall(l.accept, l) end)
        loom.wait_all_tasks_blocked()
        local e = err_of(l.accept, l)
        assert.is_true(loom.is(e, loom.BusyResourceError))
        assert.equal("Another task is already accepting connections from "
          .. "this resource", e.message)
        l:close()
      end)
      assert_no_leaks()
    end)
  end)

  it("cancel a blocked accept promptly; the listener stays usable",
    function()
      loom.run(function()
        local l = loom.create_tcp_listener{ local_host = HOST }
        local _, port = l:local_address()
        local h
        loom.task_group(function(tg)
          h = tg:start_soon(function() l:accept() end)
          loom.wait_all_tasks_blocked()
          h:cancel()
          loom.wait_all_tasks_blocked()
          assert.equal("cancelled", h:status())
        end)
        local c = loom.connect_tcp(HOST, port)
        local s = l:accept()
        c:send("after")
        assert.equal("after", s:receive())
        c:close(); s:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("serve runs each handler in its own task and closes its stream",
    function()
      loom.run(function()
        local l = loom.create_tcp_listener{ local_host = HOST }
        local _, port = l:local_address()
        local seen = {}
        loom.task_group(function(tg)
          tg:start_soon(l.serve, l, function(stream)
            local who = stream:receive()
            seen[#seen + 1] = who
            stream:send("hello " .. who)
          end)
          for _, name in ipairs({ "a", "b", "c" }) do
            local c <close> = loom.connect_tcp(HOST, port)
            c:send(name)
            -- the handler returned: serve closed its stream (EOF here)
            assert.equal("hello " .. name, receive_all(c))
          end
          tg:cancel()
        end)
        assert.same({ "a", "b", "c" }, seen)
        l:close()
        assert_no_leaks()
      end)
    end)

  it("serve into a given task group; a handler error cancels it",
    function()
      loom.run(function()
        local l = loom.create_tcp_listener{ local_host = HOST }
        local _, port = l:local_address()
        local ok, eg = pcall(loom.task_group, function(tg)
          tg:start_soon(l.serve, l, function() error("handler broke", 0) end,
            tg)
          local c <close> = loom.connect_tcp(HOST, port) -- luacheck: no unused
          loom.sleep_forever()
        end)
        assert.is_false(ok)
        assert.is_true(loom.is(eg, loom.ErrorGroup))
        assert.same({ "handler broke" }, eg.errors)
        l:close()
        assert_no_leaks()
      end)
    end)

  it("serve checks its arguments", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = HOST }
      assert.has_error(function() l:serve(42) end,
        "bad argument #1 to 'serve' (function expected, got number)")
      assert.has_error(function() l:serve(print, {}) end,
        "bad argument #2 to 'serve' (task group expected, got table)")
      l:close()
    end)
  end)
end)

describe("loom TCP streams", function()
  it("round-trip bytes, binary-safe, with receive's max_bytes", function()
    loom.run(function()
      local l, c, s = pair()
      local blob = "a\0b\255c" .. string.rep("z", 5)
      c:send(blob)
      assert.equal("a\0b\255", s:receive(4))
      assert.equal("c" .. string.rep("z", 5), s:receive(100))
      c:send("")  -- nothing to send: just a checkpoint
      s:send("reply")
      assert.equal("reply", c:receive())
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("raise EndOfStream after an orderly close, every time", function()
    loom.run(function()
      local l, c, s = pair()
      s:send("bye")
      s:close()
      assert.equal("bye", c:receive())
      for _ = 1, 2 do
        local e = err_of(c.receive, c)
        assert.is_true(loom.is(e, loom.EndOfStream))
        assert.equal("receive: the peer closed the connection", e.message)
      end
      c:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("half-close with send_eof; the other direction keeps working",
    function()
      loom.run(function()
        local l, c, s = pair()
        c:send("request")
        c:send_eof()
        c:send_eof()  -- idempotent
        assert.equal("request", receive_all(s))
        s:send("response")
        s:close()
        assert.equal("response", receive_all(c))
        local e = err_of(c.send, c, "more")
        assert.is_true(loom.is(e, loom.ClosedResourceError))
        assert.equal("send: cannot send after send_eof()", e.message)
        c:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("raise ClosedResourceError on use after close; close is idempotent",
    function()
      loom.run(function()
        local l, c, s = pair()
        c:close()
        c:close()
        for _, call in ipairs({
          function() return c:receive() end,
          function() return c:send("x") end,
          function() return c:send_eof() end,
          function() return c:local_address() end,
          function() return c:remote_address() end }) do
          assert.is_true(loom.is(err_of(call), loom.ClosedResourceError))
        end
        assert.equal("receive: the stream is closed",
          err_of(c.receive, c).message)
        assert.matches("^loom.TCPStream: 0x%x+ %(closed%)$", tostring(c))
        do
          local s2 <close> = s -- luacheck: no unused
        end
        assert.is_true(loom.is(err_of(s.receive, s),
          loom.ClosedResourceError))
        l:close()
        assert_no_leaks()
      end)
    end)

  it("closing a stream wakes its blocked receiver and sender", function()
    loom.run(function()
      local l, c, s = pair()
      local rerr, serr, ferr
      loom.task_group(function(tg)
        tg:start_soon(function() rerr = err_of(s.receive, s) end)
        local _, _, first = fill(tg, s)  -- blocks a sender: c never reads
        ferr = first
        tg:start_soon(function() serr = err_of(s.send, s, "x") end)
        loom.wait_all_tasks_blocked()
        s:close()
      end)
      assert.is_true(loom.is(rerr, loom.ClosedResourceError))
      assert.equal("receive: the stream was closed by another task",
        rerr.message)
      assert.is_true(loom.is(ferr(), loom.ClosedResourceError))
      assert.equal("send: the stream was closed by another task",
        ferr().message)
      -- the second sender found the first one still sending
      assert.is_true(loom.is(serr, loom.BusyResourceError))
      assert.equal("Another task is already writing to this resource",
        serr.message)
      c:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("allow one receive at a time (BusyResourceError)", function()
    loom.run(function()
      local l, c, s = pair()
      loom.task_group(function(tg)
        tg:start_soon(function() assert.equal("x", s:receive()) end)
        loom.wait_all_tasks_blocked()
        local e = err_of(s.receive, s)
        assert.is_true(loom.is(e, loom.BusyResourceError))
        assert.equal("Another task is already reading from this resource",
          e.message)
        c:send("x")
      end)
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("cancel a blocked receive promptly; nothing is lost", function()
    loom.run(function()
      local l, c, s = pair()
      local h
      loom.task_group(function(tg)
        h = tg:start_soon(function() s:receive() end)
        loom.wait_all_tasks_blocked()
        h:cancel()
        loom.wait_all_tasks_blocked()
        assert.equal("cancelled", h:status())
      end)
      local scope = loom.move_on_after(0.02, function() s:receive() end)
      assert.is_true(scope.cancelled_caught)
      c:send("late")
      assert.equal("late", s:receive())
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("raise Cancelled before doing anything in a cancelled scope",
    function()
      loom.run(function()
        local l, c, s = pair()
        c:send("kept")
        loom.wait_all_tasks_blocked()
        local scope = loom.cancel_scope()
        scope:run(function()
          scope:cancel()
          assert.is_true(loom.is_cancelled(err_of(s.receive, s)))
          assert.is_true(loom.is_cancelled(err_of(s.send, s, "never")))
          assert.is_true(loom.is_cancelled(err_of(s.send_eof, s)))
          assert.is_true(loom.is_cancelled(
            err_of(loom.connect_tcp, HOST, 1)))
          assert.is_true(loom.is_cancelled(err_of(l.accept, l)))
        end)
        assert.equal("kept", s:receive())
        scope = loom.move_on_after(0.02, function() c:receive() end)
        assert.is_true(scope.cancelled_caught)  -- "never" was not sent
        c:close(); s:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("backpressure: a peer that never reads blocks the sender, bounded",
    function()
      loom.run(function()
        local l, c, s = pair()
        loom.task_group(function(tg)
          local h, sent = fill(tg, s)
          local st = core.tcp_stats()
          -- the kernel holds a few MiB; loom holds at most one chunk
          assert.is_true(sent() < 64 * 1024 * 1024)
          assert.is_true(st.write_queue_bytes <= #CHUNK)
          assert.is_true(st.write_queue_bytes > 0)
          -- and the side that does not read buffers nothing in loom
          assert.equal(0, st.rbuf_bytes)
          h:cancel()
        end)
        c:close(); s:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("cancel a blocked send: the sending side is broken, receive works",
    function()
      loom.run(function()
        local l, c, s = pair()
        loom.task_group(function(tg)
          local h = fill(tg, s)
          h:cancel()
          loom.wait_all_tasks_blocked()
          assert.equal("cancelled", h:status())
        end)
        local e = err_of(s.send, s, "more")
        assert.is_true(loom.is(e, loom.BrokenResourceError))
        assert.equal("send: a cancelled send left this stream's sending "
          .. "side in an unknown state", e.message)
        assert.is_true(loom.is(err_of(s.send_eof, s),
          loom.BrokenResourceError))
        c:send("still readable")
        assert.equal("still readable", s:receive())
        c:close(); s:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("refused connections raise OSError ECONNREFUSED", function()
    loom.run(function()
      local port = free_port()
      local e = err_of(loom.connect_tcp, HOST, port)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("ECONNREFUSED", e.code)
      assert.equal(("connect_tcp: connection refused (127.0.0.1:%d)")
        :format(port), e.message)
      assert_no_leaks()
    end)
  end)

  it("resolve names: connect_tcp('localhost', port)", function()
    loom.run(function()
      -- <close>: a failure here must not leave a listener open for the
      -- leak checks of the tests after it.
      local l <close> = loom.create_tcp_listener{ local_host = HOST }
      local _, port = l:local_address()
      -- localhost may resolve to ::1 first: refused, then 127.0.0.1.
      local c <close> = loom.connect_tcp("localhost", port)
      local s = l:accept()
      assert.equal(HOST, (c:remote_address()))
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("cancel a blocked connect promptly (full backlog)", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = HOST, backlog = 1 }
      local _, port = l:local_address()
      local conns, hung = {}, false
      for _ = 1, 20 do
        local scope = loom.move_on_after(0.05, function()
          conns[#conns + 1] = loom.connect_tcp(HOST, port)
        end)
        if scope.cancelled_caught then hung = true break end
      end
      assert.is_true(hung)
      for _, c in ipairs(conns) do c:close() end
      l:close()
      assert_no_leaks()
    end)
  end)

  it("a peer reset raises BrokenResourceError ECONNRESET in the reader, "
    .. "sticky",
    function()
      loom.run(function()
        local l, c, s, port = pair()
        c:send("never read")
        loom.sleep(0.01)
        s:close()  -- closing with unread data sends a reset
        for _ = 1, 2 do
          local e = err_of(c.receive, c)
          assert.is_true(loom.is(e, loom.BrokenResourceError))
          assert.is_false(loom.is(e, loom.OSError))
          assert.equal("ECONNRESET", e.code)
          assert.equal(("receive: connection reset by peer (127.0.0.1:%d)")
            :format(port), e.message)
        end
        c:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("a peer vanishing mid-transfer fails the sender with "
    .. "BrokenResourceError",
    function()
      loom.run(function()
        local l, c, s = pair()
        local err
        loom.task_group(function(tg)
          tg:start_soon(function()
            err = err_of(function()
              loom.fail_after(5, function()
                while true do c:send(CHUNK) end
              end)
            end)
          end)
          s:receive(10)
          s:close()
        end)
        assert.is_true(loom.is(err, loom.BrokenResourceError))
        assert.is_truthy(err.code == "ECONNRESET" or err.code == "EPIPE")
        c:close(); l:close()
        assert_no_leaks()
      end)
    end)

  it("serve 1,000 clients connecting at once", function()
    loom.run(function()
      local N, done = 1000, 0
      loom.fail_after(60, function()
        loom.task_group(function(tg)
          local port = tg:start(function(task_status)
            local l <close> = loom.create_tcp_listener{ local_host = HOST }
            task_status:started((select(2, l:local_address())))
            l:serve(function(stream) stream:send(stream:receive()) end)
          end)
          loom.task_group(function(clients)
            for i = 1, N do
              clients:start_soon(function()
                local c <close> = loom.connect_tcp(HOST, port)
                c:send(tostring(i))
                assert.equal(tostring(i), c:receive())
                done = done + 1
              end)
            end
          end)
          tg:cancel()
        end)
      end)
      assert.equal(N, done)
      assert_no_leaks()
    end)
  end)

  it("finalise streams and listeners nobody closed", function()
    loom.run(function()
      (function()
        local _, c = pair()
        c:send("dropped")
      end)()
      collectgarbage()
      collectgarbage()
      assert_no_leaks()
    end)
  end)

  it("show where a task waits in task_tree", function()
    loom.run(function()
      local l, c, s = pair()
      loom.task_group(function(tg)
        tg:start_soon(function() pcall(s.receive, s) end)
        tg:start_soon(function() pcall(l.accept, l) end)
        loom.wait_all_tasks_blocked()
        local text = tostring(loom.task_tree())
        assert.matches("TCPStream:receive at ", text, 1, true)
        assert.matches("TCPListener:accept at ", text, 1, true)
        s:close(); l:close()
      end)
      c:close()
      assert_no_leaks()
    end)
  end)
end)

describe("loom TCP reading ahead", function()
  it("after a receive, loom holds at most one further read; the peer is "
    .. "then held back by the kernel", function()
    loom.run(function()
      local l, c, s = pair()
      loom.task_group(function(tg)
        c:send("hello")
        assert.equal("hello", s:receive())
        -- s's owner stops receiving; the peer keeps sending
        local h, sent = fill(tg, c)
        local st = core.tcp_stats()
        assert.is_true(sent() > 0)
        assert.is_true(sent() < 64 * 1024 * 1024)
        assert.is_true(st.rbuf_bytes > 0, "one read is held")
        assert.is_true(st.rbuf_bytes <= 65536)
        h:cancel()
      end)
      -- the held read comes first, in order
      local d = s:receive(3)
      assert.equal("xxx", d)
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("receive(n) never returns more than n bytes, whatever was read ahead",
    function()
    loom.run(function()
      local l, c, s = pair()
      c:send(string.rep("a", 100) .. string.rep("b", 100))
      loom.sleep(0.01)
      local got = {}
      while #table.concat(got) < 200 do
        local d = s:receive(7)
        assert.is_true(#d >= 1 and #d <= 7)
        got[#got + 1] = d
      end
      assert.equal(string.rep("a", 100) .. string.rep("b", 100),
        table.concat(got))
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)

  it("small messages keep one small read buffer; a bulk transfer grows "
    .. "its reads to max_bytes", function()
    loom.run(function()
      local l, c, s = pair()
      for i = 1, 20 do
        c:send("ping " .. i)
        assert.equal("ping " .. i, s:receive())
        assert.is_true(core.tcp_stats().rbuf_bytes <= 4096)
      end
      local total, biggest = 4 * 1024 * 1024, 0
      loom.task_group(function(tg)
        tg:start_soon(function()
          local block = string.rep("z", 256 * 1024)
          for _ = 1, total / #block do c:send(block) end
        end)
        local n = 0
        while n < total do
          local d = s:receive()
          n = n + #d
          if #d > biggest then biggest = #d end
        end
        assert.equal(total, n)
      end)
      assert.is_true(biggest > 4096, "reads grew past 4 KiB")
      assert.is_true(biggest <= 65536)
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)
end)

describe("loom TCP misuse", function()
  it("rejects bad hosts and ports with argument errors", function()
    loom.run(function()
      local cases = {
        { { nil, 80 }, "bad argument #1 to 'connect_tcp' (string expected, "
          .. "got no value)" },
        { { "", 80 }, "bad argument #1 to 'connect_tcp' (host is empty)" },
        { { "a\0b", 80 }, "bad argument #1 to 'connect_tcp' (host contains "
          .. "a NUL)" },
        { { HOST, 0 }, "bad argument #2 to 'connect_tcp' (port must be in "
          .. "1..65535, got 0)" },
        { { HOST, 65536 }, "bad argument #2 to 'connect_tcp' (port must be "
          .. "in 1..65535, got 65536)" },
        { { HOST, 1.5 }, "bad argument #2 to 'connect_tcp' (port must be an "
          .. "integer, got 1.5)" },
        { { HOST, "80" }, "bad argument #2 to 'connect_tcp' (port must be "
          .. "an integer, got string)" },
      }
      for _, case in ipairs(cases) do
        assert.has_error(function()
          loom.connect_tcp(case[1][1], case[1][2])
        end, case[2])
      end
      for opts, msg in pairs({
        [{ local_port = 70000 }] = "local_port must be an integer in "
          .. "0..65535, got 70000",
        [{ local_port = -1 }] = "local_port must be an integer in 0..65535, "
          .. "got -1",
        [{ local_host = 5 }] = "local_host must be a non-empty string, got "
          .. "number",
        [{ backlog = 0 }] = "backlog must be a positive integer, got 0",
        [{ localport = 1 }] = "unknown option 'localport'",
      }) do
        assert.has_error(function() loom.create_tcp_listener(opts) end,
          "bad argument #1 to 'create_tcp_listener' (" .. msg .. ")")
      end
      assert.has_error(function() loom.create_tcp_listener("x") end,
        "bad argument #1 to 'create_tcp_listener' (table expected, got "
        .. "string)")
      -- a bad name is an OSError from the resolver, in the calling task
      local e = err_of(loom.connect_tcp, "bad..host", 80)
      assert.is_true(loom.is(e, loom.OSError))
      assert.is_string(e.code)
      assert_no_leaks()
    end)
  end)

  it("rejects bad stream arguments", function()
    loom.run(function()
      local l, c, s = pair()
      assert.has_error(function() c:receive(0) end,
        "bad argument #1 to 'receive' (max_bytes must be at least 1)")
      assert.has_error(function() c:receive("x") end,
        "bad argument #1 to 'receive' (number expected, got string)")
      assert.has_error(function() c:send(42) end,
        "bad argument #1 to 'send' (string expected, got number)")
      assert.has_error(function() c:send() end,
        "bad argument #1 to 'send' (string expected, got no value)")
      assert.has_error(function() c.receive(l) end,
        "bad argument #1 to 'receive' (loom.TCPStream expected, got "
        .. "loom.TCPListener)")
      assert.has_error(function() l.accept(c) end,
        "bad argument #1 to 'accept' (loom.TCPListener expected, got "
        .. "loom.TCPStream)")
      c:close(); s:close(); l:close()
    end)
  end)

  it("blocking calls need a task", function()
    local l, c, s
    loom.run(function() l, c, s = pair() end)
    assert.has_error(function() c:receive() end, "loom.TCPStream:receive: "
      .. "must be called from inside a loom task (start one with loom.run)")
    assert.has_error(function() l:accept() end, "loom.TCPListener:accept: "
      .. "must be called from inside a loom task (start one with loom.run)")
    assert.has_error(function() loom.connect_tcp(HOST, 1) end,
      "loom.connect_tcp: must be called from inside a loom task (start one "
      .. "with loom.run)")
    c:close(); s:close(); l:close()
  end)

  it("blocking calls need a yieldable context", function()
    loom.run(function()
      local l, c, s = pair()
      local ok, e = pcall(table.sort, { 1, 2 }, function()
        c:receive()
        return false
      end)
      assert.is_false(ok)
      assert.matches("loom.TCPStream:receive: cannot suspend here", e, 1,
        true)
      c:close(); s:close(); l:close()
      assert_no_leaks()
    end)
  end)
end)

describe("loom TCP examples", function()
  -- The build under test (make asan builds elsewhere) and the memory
  -- check's prefix (make valgrind, make asan), as in examples_spec.lua.
  local env = ('LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH=%s %s ')
    :format(H.q(H.build .. "/?.so;;"), os.getenv("LOOM_TEST_PREFIX") or "")
  local function run(script)
    local p = assert(io.popen(env .. "lua5.4 " .. script .. " 2>&1"))
    local out = p:read("a")
    p:close()
    return out
  end

  it("examples/echo.lua", function()
    assert.equal([[
echo service is listening on 127.0.0.1
sent hello, got back hello
sent structured, got back structured
sent concurrency, got back concurrency
service stopped
]], run("examples/echo.lua"))
  end)

  it("examples/http_fetch.lua", function()
    assert.equal([[
GET /         200 OK           welcome
GET /tasks    200 OK           task groups, cancel scopes
GET /net      200 OK           streams, listeners, getaddrinfo
GET /missing  404 Not Found    no such page
]], run("examples/http_fetch.lua"))
  end)
end)
