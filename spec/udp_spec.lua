-- UDP sockets (udp.c, udp.lua) on loopback.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")

local function settle() loom.sleep(0.005) end

after_each(function()
  loom.run(settle)
  assert.same({ sockets = 0, closing = 0 }, core.udp_stats())
end)

local function msg(...) return H.message(H.capture_error(...)) end

describe("loom.create_udp_socket", function()
  it("sends and receives datagrams with the sender's address", function()
    loom.run(function()
      local a <close> = loom.create_udp_socket{ local_host = "127.0.0.1" }
      local b <close> = loom.create_udp_socket{ family = "inet" }
      local host, port = a:local_address()
      assert.equal("127.0.0.1", host)
      assert.equal("integer", math.type(port))
      b:send_to("hello", "127.0.0.1", port)
      b:send_to("", "localhost", port)
      local data, h, p = a:receive_from()
      assert.equal("hello", data)
      assert.equal("127.0.0.1", h)
      local _, bport = b:local_address()
      assert.equal(bport, p)
      assert.equal("", (a:receive_from()))
      assert.truthy(tostring(a):find("^loom.UDPSocket: .* %(bound to "
        .. "127.0.0.1:" .. port .. "%)$"))
    end)
  end)

  it("carries 65,507-byte datagrams and refuses bigger ones", function()
    loom.run(function()
      local a <close> = loom.create_udp_socket{ local_host = "127.0.0.1" }
      local _, port = a:local_address()
      local big = ("z"):rep(65507)
      a:send_to(big, "127.0.0.1", port)
      assert.equal(big, (a:receive_from()))
      local e = H.capture_error(a.send_to, a, big .. "z", "127.0.0.1", port)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("EMSGSIZE", e.code)
      assert.equal("send_to: datagram too large (65508 bytes; at most 65507 "
        .. "over IPv4) (127.0.0.1:" .. port .. ")", e.message)
    end)
  end)

  it("works over IPv6", function()
    loom.run(function()
      local ok, a = pcall(loom.create_udp_socket, { local_host = "::1" })
      if not ok then return end   -- no IPv6 loopback here
      local _, port = a:local_address()
      a:send_to(("6"):rep(65527), "::1", port)
      assert.equal(65527, #a:receive_from())
      assert.equal("EMSGSIZE", H.capture_error(a.send_to, a,
        ("6"):rep(65528), "::1", port).code)
      a:close()
    end)
  end)

  it("checks ports and hosts before sending", function()
    loom.run(function()
      local a <close> = loom.create_udp_socket{ local_host = "127.0.0.1" }
      assert.equal("bad argument #3 to 'send_to' (port must be in 0..65535, "
        .. "got 65536)", msg(a.send_to, a, "x", "127.0.0.1", 65536))
      assert.equal("bad argument #3 to 'send_to' (port must be in 0..65535, "
        .. "got -1)", msg(a.send_to, a, "x", "127.0.0.1", -1))
      assert.equal("bad argument #2 to 'send_to' (host must be a string, "
        .. "got no value)", msg(a.send_to, a, "x", nil, 1))
      assert.equal("bad argument #1 to 'send_to' (string expected, got "
        .. "number)", msg(a.send_to, a, 5, "127.0.0.1", 1))
      local e = H.capture_error(a.send_to, a, "x", "no-such-host.invalid", 9)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("bad argument #1 to 'create_udp_socket' (either family "
        .. "or local_host must be given)", msg(loom.create_udp_socket, {}))
      assert.equal("bad argument #1 to 'create_udp_socket' (unknown option "
        .. "'port')", msg(loom.create_udp_socket, { port = 1 }))
      assert.equal("bad argument #1 to 'create_connected_udp_socket' "
        .. "(unknown option 'host')", msg(loom.create_connected_udp_socket,
          { host = "127.0.0.1", remote_host = "127.0.0.1", remote_port = 9 }))
      assert.equal("loom.UDPSocket has no method 'sendto' (did you mean "
        .. "'send_to'?)", msg(function() return a.sendto end))
      assert.equal("bad argument #1 to 'create_udp_socket' (local_port must "
        .. "be in 0..65535, got 70000)", msg(loom.create_udp_socket,
          { family = "inet", local_port = 70000 }))
      assert.equal("bad argument #1 to 'create_udp_socket' (family must be "
        .. "\"inet\" or \"inet6\", got unix)", msg(loom.create_udp_socket,
          { family = "unix" }))
      e = H.capture_error(loom.create_udp_socket, { local_host = "1.2.3.4" })
      assert.equal("EADDRNOTAVAIL", e.code)
    end)
  end)

  it("binds twice to one port with reuse_port", function()
    loom.run(function()
      local a <close> = loom.create_udp_socket{ local_host = "127.0.0.1",
        reuse_port = true }
      local _, port = a:local_address()
      local b <close> = loom.create_udp_socket{ local_host = "127.0.0.1",
        local_port = port, reuse_port = true }
      assert.equal(port, select(2, b:local_address()))
      local e = H.capture_error(loom.create_udp_socket,
        { local_host = "127.0.0.1", local_port = port })
      assert.equal("EADDRINUSE", e.code)
    end)
  end)

  it("receive is cancellable; a second receiver is busy", function()
    loom.run(function()
      local a <close> = loom.create_udp_socket{ local_host = "127.0.0.1" }
      loom.task_group(function(tg)
        tg:start_soon(function() a:receive_from() end)
        loom.wait_all_tasks_blocked()
        local e = H.capture_error(a.receive_from, a)
        assert.is_true(loom.is(e, loom.BusyResourceError))
        tg.cancel_scope:cancel()
      end)
      local s = loom.move_on_after(0.02, function() a:receive_from() end)
      assert.is_true(s.cancelled_caught)
      -- Nothing was lost: the next datagram still arrives.
      local _, port = a:local_address()
      a:send_to("after", "127.0.0.1", port)
      assert.equal("after", (a:receive_from()))
    end)
  end)

  it("close wakes a receiver with ClosedResourceError", function()
    loom.run(function()
      local a = loom.create_udp_socket{ local_host = "127.0.0.1" }
      loom.task_group(function(tg)
        tg:start_soon(function()
          local e = H.capture_error(a.receive_from, a)
          assert.is_true(loom.is(e, loom.ClosedResourceError))
          assert.equal("receive_from: the socket is closed", e.message)
        end)
        loom.wait_all_tasks_blocked()
        a:close()
        a:close()
      end)
      assert.is_true(loom.is(H.capture_error(a.send_to, a, "x", "127.0.0.1",
        1), loom.ClosedResourceError))
      assert.is_true(loom.is(H.capture_error(a.local_address, a),
        loom.ClosedResourceError))
    end)
  end)
end)

describe("loom.create_connected_udp_socket", function()
  it("sends, receives and knows both addresses", function()
    loom.run(function()
      local srv <close> = loom.create_udp_socket{ local_host = "127.0.0.1" }
      local _, port = srv:local_address()
      -- Not "localhost": UDP has no handshake, so a connected socket keeps
      -- the first address getaddrinfo gives, ::1 on hosts that list it
      -- first, where this IPv4 server does not listen.
      local c <close> = loom.create_connected_udp_socket{
        remote_host = "127.0.0.1", remote_port = port }
      assert.same({ "127.0.0.1", port }, { c:remote_address() })
      local _, cport = c:local_address()
      c:send("ping")
      c:send("")
      local d, _, p = srv:receive_from()
      assert.equal("ping", d)
      assert.equal(cport, p)
      assert.equal("", (srv:receive_from()))
      srv:send_to("pong", "127.0.0.1", cport)
      assert.equal("pong", c:receive())
      assert.equal("EMSGSIZE", H.capture_error(c.send, c,
        ("x"):rep(65508)).code)
    end)
  end)

  it("reports ECONNREFUSED from a closed port cleanly", function()
    loom.run(function()
      local tmp = loom.create_udp_socket{ local_host = "127.0.0.1" }
      local _, port = tmp:local_address()
      tmp:close()
      local c <close> = loom.create_connected_udp_socket{
        remote_host = "127.0.0.1", remote_port = port }
      c:send("anyone?")
      local e = H.capture_error(c.receive, c)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("ECONNREFUSED", e.code)
      assert.equal("receive: connection refused (127.0.0.1:" .. port .. ")",
        e.message)
      -- The socket stays usable; the next refusal shows in the next send
      -- or receive (whichever meets the kernel's report first).
      c:send("again")
      loom.sleep(0.01)
      local ok
      ok, e = pcall(c.send, c, "x")
      if ok then e = H.capture_error(c.receive, c) end
      assert.equal("ECONNREFUSED", e.code)
    end)
  end)

  it("checks its options", function()
    loom.run(function()
      assert.equal("bad argument #1 to 'create_connected_udp_socket' "
        .. "(remote_port must be in 1..65535, got 0)",
        msg(loom.create_connected_udp_socket, { remote_host = "127.0.0.1",
          remote_port = 0 }))
      assert.equal("bad argument #1 to 'create_connected_udp_socket' "
        .. "(remote_host must be a string, got no value)",
        msg(loom.create_connected_udp_socket, { remote_port = 5 }))
      assert.equal("bad argument #1 to 'create_connected_udp_socket' "
        .. "(table expected, got no value)",
        msg(loom.create_connected_udp_socket))
    end)
  end)
end)
