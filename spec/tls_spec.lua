-- TLS (tls.c, tls.lua) against peers written independently of loom:
-- `openssl s_server` / `s_client` and Python's ssl module, with a CA and
-- certificates this spec makes with the openssl command.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")
local certs_mod = require("tls_certs")

local here = debug.getinfo(1, "S").source:gsub("^@", "")
local PEER = here:gsub("tls_spec%.lua$", "peers/tls_peer.py")

local C

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run cmd in the background; returns the path of its output. Its exit
-- status lands in path .. ".rc".
local function bg(cmd)
  local out = os.tmpname()
  os.execute(("sh -c %s >/dev/null 2>&1 &"):format(
    q(("(%s) >%s 2>&1; echo $? >%s.rc"):format(cmd, q(out), q(out)))))
  return out
end

local function slurp(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- Inside loom: wait for a background command; returns output, status.
local function wait_bg(out, seconds)
  local stop = loom.now() + (seconds or 10)
  while loom.now() < stop do
    local rc = slurp(out .. ".rc")
    if rc and rc:find("\n") then
      local text = slurp(out)
      os.remove(out)
      os.remove(out .. ".rc")
      return text, tonumber(rc)
    end
    loom.sleep(0.01)
  end
  error("background command did not finish: " .. tostring(slurp(out)))
end

local function free_port()
  local l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = l:local_address()
  l:close()
  return port
end

-- Connect until the server listens (it starts in the background).
local function connect_retry(port, opts)
  for _ = 1, 500 do
    local ok, s = pcall(loom.connect_tcp, "localhost", port, opts)
    if ok then return s end
    if not (loom.is(s, loom.OSError) and s.code == "ECONNREFUSED") then
      error(s, 0)
    end
    loom.sleep(0.01)
  end
  error("server did not come up on port " .. port)
end

-- A Python echo server; returns the port and the process's pipe.
local function python_echo_server(cert, key, cafile)
  local p = io.popen(("python3 %s echo-server %s %s %s 2>&1"):format(q(PEER),
    q(cert), q(key), cafile and q(cafile) or ""))
  local port = tonumber(p:read("l"))
  assert(port, "python peer did not start")
  return port, p
end

local function tls_error(fn, ...)
  local e = H.capture_error(fn, ...)
  assert(loom.is(e, loom.TLSError), "expected a TLSError, got "
    .. tostring(e))
  assert.is_true(loom.is(e, loom.BrokenResourceError))
  return e
end

local function settle()
  loom.sleep(0.01)
  collectgarbage()
  collectgarbage()
end

setup(function() C = certs_mod.make() end)
teardown(function() certs_mod.cleanup() end)

after_each(function()
  loom.run(settle)
  assert.equal(0, core.tls_stats().ssl_objects)
  assert.same({ streams = 0, listeners = 0, closing = 0, active_reqs = 0,
                rbuf_bytes = 0, write_queue_bytes = 0 }, core.tcp_stats())
end)

describe("TLS client", function()
  it("talks to openssl s_server, verifying against the test CA", function()
    loom.run(function()
      local port = free_port()
      local out = bg(("openssl s_server -accept 127.0.0.1:%d -cert %s -key "
        .. "%s -naccept 1 -rev -quiet"):format(port, q(C.server_cert),
        q(C.server_key)))
      local s = connect_retry(port, { tls = { cafile = C.ca } })
      assert.equal("TLSv1.3", s:tls_version())
      s:send("hello\n")
      local b = loom.buffered(s)
      assert.equal("olleh", b:receive_until("\n", 100))
      local cert = s:peer_certificate()
      assert.equal("CN=localhost", cert.subject)
      assert.equal("CN=loom test CA", cert.issuer)
      assert.same({ "DNS:localhost", "IP:127.0.0.1", "IP:::1" }, cert.san)
      assert.equal("integer", math.type(cert.not_before))
      assert.is_true(cert.not_after > cert.not_before)
      H.contains(cert.pem, "-----BEGIN CERTIFICATE-----")
      assert.is_nil(s:alpn_protocol())
      s:close()
      s:close()
      wait_bg(out)
    end)
  end)

  it("echoes 1 MB both ways with Python's ssl, full duplex", function()
    local port, p = python_echo_server(C.server_cert, C.server_key)
    loom.run(function()
      local s = loom.connect_tcp("127.0.0.1", port, { tls = {
        cafile = C.ca, alpn = { "x-loom" } } })
      assert.equal("x-loom", s:alpn_protocol())
      local size = 1024 * 1024
      local payload = {}
      for i = 1, size // 1024 do
        payload[i] = string.char(i % 256):rep(1024)
      end
      payload = table.concat(payload)
      local got = {}
      loom.task_group(function(tg)
        tg:start_soon(function()
          for i = 1, size, 65536 do s:send(payload:sub(i, i + 65535)) end
          s:send_eof()
        end)
        local n = 0
        while n < size do
          local d = s:receive()
          got[#got + 1] = d
          n = n + #d
        end
      end)
      assert.is_true(table.concat(got) == payload)
      -- The peer answers our close_notify with its own.
      assert.is_true(loom.is(H.capture_error(s.receive, s), loom.EndOfStream))
      s:close()
    end)
    assert.equal("echoed 1048576 alpn x-loom\n", p:read("a"))
    p:close()
  end)

  it("refuses an expired certificate", function()
    local port, p = python_echo_server(C.expired_cert, C.expired_key)
    loom.run(function()
      local e = tls_error(loom.connect_tcp, "localhost", port,
        { tls = { cafile = C.ca } })
      assert.equal("CERTIFICATE_VERIFY_FAILED", e.code)
      assert.equal("TLS handshake failed: certificate verify failed: "
        .. "certificate has expired", e.message)
    end)
    H.contains(p:read("a"), "handshake failed")
    p:close()
  end)

  it("refuses a self-signed certificate", function()
    local port, p = python_echo_server(C.self_cert, C.self_key)
    loom.run(function()
      local e = tls_error(loom.connect_tcp, "localhost", port,
        { tls = { cafile = C.ca } })
      assert.equal("CERTIFICATE_VERIFY_FAILED", e.code)
      H.contains(e.message, "self-signed certificate")
    end)
    p:close()
  end)

  it("checks the hostname, and IP literals against IP SANs", function()
    local port, p = python_echo_server(C.other_cert, C.other_key)
    loom.run(function()
      local e = tls_error(loom.connect_tcp, "localhost", port,
        { tls = { cafile = C.ca } })
      assert.equal("TLS handshake failed: certificate verify failed: "
        .. "hostname mismatch", e.message)
    end)
    p:close()
    port, p = python_echo_server(C.other_cert, C.other_key)
    loom.run(function()
      local e = tls_error(loom.connect_tcp, "127.0.0.1", port,
        { tls = { cafile = C.ca } })
      assert.equal("TLS handshake failed: certificate verify failed: "
        .. "IP address mismatch", e.message)
    end)
    p:close()
    port, p = python_echo_server(C.server_cert, C.server_key)
    loom.run(function()
      local s = loom.connect_tcp("127.0.0.1", port, { tls = { cafile = C.ca,
        hostname = "127.0.0.1" } })
      s:send("ip")
      assert.equal("ip", s:receive())
      s:close()
    end)
    p:close()
  end)

  it("verifies against the system store by default", function()
    local port, p = python_echo_server(C.server_cert, C.server_key)
    loom.run(function()
      local e = tls_error(loom.connect_tcp, "localhost", port,
        { tls = true })
      H.contains(e.message, "unable to get local issuer certificate")
    end)
    p:close()
    port, p = python_echo_server(C.self_cert, C.self_key)
    loom.run(function()
      local s = loom.connect_tcp("localhost", port, { tls = {
        verify = false } })
      s:send("unverified")
      assert.equal("unverified", s:receive())
      s:close()
    end)
    p:close()
  end)

  it("fails cleanly against a plain TCP peer speaking garbage", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = l:local_address()
      loom.task_group(function(tg)
        tg:start_soon(function()
          local s = l:accept()
          s:send("HTTP/1.1 400 Bad Request\r\n\r\nnot tls at all\r\n")
          s:close()
        end)
        local e = tls_error(loom.connect_tcp, "localhost", port,
          { tls = { cafile = C.ca } })
        assert.equal("WRONG_VERSION_NUMBER", e.code)
      end)
      l:close()
    end)
  end)

  it("a stalled handshake is cancelled by the caller's timeout", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = l:local_address()
      local raw
      loom.task_group(function(tg)
        tg:start_soon(function() raw = l:accept() end)
        local e = H.capture_error(loom.fail_after, 0.1, function()
          return loom.connect_tcp("localhost", port, { tls = {
            cafile = C.ca } })
        end)
        assert.is_true(loom.is(e, loom.TimeoutError))
      end)
      raw:close()
      l:close()
      settle()
      assert.equal(0, core.tls_stats().ssl_objects)
    end)
  end)

  it("a peer closing without close_notify is broken unless told", function()
    for _, compat in ipairs({ true, false }) do
      loom.run(function()
        local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
        local _, port = raw:local_address()
        local l = loom.tls_listener(raw, { certfile = C.server_cert,
          keyfile = C.server_key })
        loom.task_group(function(tg)
          tg:start_soon(function()
            local s = l:accept()
            s:send("data")
            s.transport:close()   -- no close_notify
            s:close()
          end)
          local s <close> = loom.connect_tcp("localhost", port, { tls = {
            cafile = C.ca, standard_compatible = compat } })
          assert.equal("data", s:receive())
          local e = H.capture_error(s.receive, s)
          if compat then
            assert.is_true(loom.is(e, loom.BrokenResourceError))
            assert.equal("UNEXPECTED_EOF", e.code)
          else
            assert.is_true(loom.is(e, loom.EndOfStream))
          end
        end)
        l:close()
      end)
    end
  end)
end)

describe("TLS server", function()
  it("serves openssl s_client", function()
    loom.run(function()
      local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = raw:local_address()
      local l = loom.tls_listener(raw, { certfile = C.server_cert,
        keyfile = C.server_key })
      local out = bg(("printf 'ping\\n' | openssl s_client -connect "
        .. "127.0.0.1:%d -CAfile %s -verify_return_error -servername "
        .. "localhost -verify_hostname localhost -quiet -ign_eof")
        :format(port, q(C.ca)))
      local s = l:accept()
      assert.equal("ping\n", loom.buffered(s):receive_exactly(5))
      s:send("pong\n")
      s:close()   -- s_client (-ign_eof) exits on our close_notify
      local text, rc = wait_bg(out)
      H.contains(text, "pong")
      assert.equal(0, rc)
      l:close()
    end)
  end)

  it("requires a client certificate when verify is on", function()
    loom.run(function()
      local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = raw:local_address()
      local l = loom.tls_listener(raw, { certfile = C.server_cert,
        keyfile = C.server_key, verify = true, cafile = C.ca,
        alpn = { "http/1.1", "x-loom" } })
      local s, good
      loom.task_group(function(tg)
        tg:start_soon(function() s = l:accept() end)
        -- Without a certificate: the handshake fails and accept skips it.
        local text = wait_bg(bg(("python3 %s client %d localhost %s 10")
          :format(q(PEER), port, q(C.ca))))
        assert.truthy(text == "failed: TLSV13_ALERT_CERTIFICATE_REQUIRED\n"
          or text:find("^handshake failed"), text)
        assert.is_nil(s)
        good = bg(("python3 %s client %d localhost %s 100000 %s %s")
          :format(q(PEER), port, q(C.ca), q(C.client_cert), q(C.client_key)))
      end)
      assert.equal("CN=loom client", s:peer_certificate().subject)
      assert.equal("x-loom", s:alpn_protocol())
      local n = 0
      while n < 100000 do
        local d = s:receive()
        s:send(d)
        n = n + #d
      end
      assert.is_true(loom.is(H.capture_error(s.receive, s), loom.EndOfStream))
      s:close()
      assert.equal("client got 100000 same True alpn x-loom\n", wait_bg(good))
      l:close()
    end)
  end)

  it("accept skips failed handshakes; a stalled client blocks nobody",
    function()
      loom.run(function()
        local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
        local _, port = raw:local_address()
        local l = loom.tls_listener(raw, { certfile = C.server_cert,
          keyfile = C.server_key })
        local stalled = loom.connect_tcp("127.0.0.1", port)
        local garbage = loom.connect_tcp("127.0.0.1", port)
        garbage:send("GET / HTTP/1.0\r\n\r\n")
        loom.task_group(function(tg)
          tg:start_soon(function()
            loom.sleep(0.05)
            local c = loom.connect_tcp("localhost", port, { tls = {
              cafile = C.ca } })
            c:send("hi")
            c:close()
          end)
          local s = l:accept()
          assert.equal("hi", s:receive())
          s:close()
        end)
        -- The stalled handshake is still pending, not lost.
        assert.equal(1, (function()
          local n = 0
          for _ in pairs(l.pending) do n = n + 1 end
          return n
        end)())
        stalled:close()
        garbage:close()
        l:close()
        assert.is_true(loom.is(H.capture_error(l.accept, l),
          loom.ClosedResourceError))
      end)
    end)

  it("serve runs each handshake in the handler's task", function()
    loom.run(function()
      local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = raw:local_address()
      local l = loom.tls_listener(raw, { certfile = C.server_cert,
        keyfile = C.server_key })
      local served = {}
      loom.task_group(function(tg)
        tg:start_soon(function()
          l:serve(function(s)
            local d = s:receive()
            served[#served + 1] = d
            s:send(d:upper())
          end)
        end)
        local stalled = loom.connect_tcp("127.0.0.1", port)
        local garbage = loom.connect_tcp("127.0.0.1", port)
        garbage:send("\22\3\1garbage garbage")
        for i = 1, 3 do
          local c = loom.connect_tcp("localhost", port, { tls = {
            cafile = C.ca } })
          c:send("req" .. i)
          assert.equal("REQ" .. i, c:receive())
          c:close()
        end
        stalled:close()
        garbage:close()
        tg.cancel_scope:cancel()
      end)
      assert.same({ "req1", "req2", "req3" }, served)
      l:close()
    end)
  end)
end)

describe("TLS streams", function()
  local function pair(copts)
    local raw = loom.create_tcp_listener{ local_host = "127.0.0.1" }
    local _, port = raw:local_address()
    local l = loom.tls_listener(raw, { certfile = C.server_cert,
      keyfile = C.server_key })
    local server, client
    loom.task_group(function(tg)
      tg:start_soon(function() server = l:accept() end)
      local o = { cafile = C.ca }
      for k, v in pairs(copts or {}) do o[k] = v end
      client = loom.connect_tcp("localhost", port, { tls = o })
    end)
    return l, client, server
  end

  it("send_eof sends close_notify and the stream still receives", function()
    loom.run(function()
      local l, c, s = pair()
      assert.is_nil(s:peer_certificate())   -- the client sent none
      assert.is_nil(s:alpn_protocol())
      assert.equal("CN=localhost", c:peer_certificate().subject)
      assert.same({ "127.0.0.1", select(2, c:local_address()) },
        { s:remote_address() })
      c:send_eof()
      assert.is_true(loom.is(H.capture_error(s.receive, s), loom.EndOfStream))
      assert.is_true(loom.is(H.capture_error(s.receive, s), loom.EndOfStream))
      s:send("after eof")
      assert.equal("after eof", c:receive())
      assert.equal("send: cannot send after send_eof()",
        H.capture_error(c.send, c, "x").message)
      c:close()
      s:close()
      l:close()
    end)
  end)

  it("close sends close_notify without waiting; closed raises", function()
    loom.run(function()
      local l, c, s = pair()
      c:close()
      assert.is_true(loom.is(H.capture_error(s.receive, s), loom.EndOfStream))
      for _, m in ipairs({ "receive", "send", "send_eof", "alpn_protocol",
          "peer_certificate" }) do
        local e = H.capture_error(c[m], c, "x")
        assert.is_true(loom.is(e, loom.ClosedResourceError), m)
        assert.equal(m .. ": the stream is closed", e.message)
      end
      assert.equal("loom.TLSStream: closed", tostring(c))
      s:close()
      l:close()
    end)
  end)

  it("a second concurrent receiver gets BusyResourceError", function()
    loom.run(function()
      local l, c, s = pair()
      loom.task_group(function(tg)
        tg:start_soon(function() c:receive() end)
        loom.wait_all_tasks_blocked()
        local e = H.capture_error(c.receive, c)
        assert.is_true(loom.is(e, loom.BusyResourceError))
        assert.equal("Another task is already reading from this resource",
          e.message)
        s:send("x")
      end)
      c:close()
      s:close()
      l:close()
    end)
  end)

  it("works over any stream: TLS inside TLS", function()
    loom.run(function()
      local l, c, s = pair()
      local inner_c, inner_s
      loom.task_group(function(tg)
        tg:start_soon(function()
          inner_s = loom.wrap_tls(s, { server_side = true,
            certfile = C.server_cert, keyfile = C.server_key })
        end)
        inner_c = loom.wrap_tls(c, { hostname = "localhost", cafile = C.ca })
      end)
      inner_c:send("nested")
      assert.equal("nested", inner_s:receive())
      -- Misspelt members name the class and the closest member.
      assert.equal(c, inner_c.transport)
      assert.equal("loom.TLSStream has no method 'recieve' (did you mean "
        .. "'receive'?)", H.message(H.capture_error(function()
          return inner_c.recieve end)))
      inner_c:close()
      inner_s:close()
      l:close()
    end)
  end)

  it("rejects bad options clearly", function()
    loom.run(function()
      local function msg(...) return H.message(H.capture_error(...)) end
      assert.equal("bad argument #1 to 'wrap_tls' (stream expected, got "
        .. "no value)", msg(loom.wrap_tls))
      local l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      assert.equal("bad argument #2 to 'wrap_tls' (unknown option 'host')",
        msg(loom.wrap_tls, { receive = 1, send = 1 }, { host = "x" }))
      assert.equal("bad argument #2 to 'tls_listener' (certfile is required "
        .. "on the server side)", msg(loom.tls_listener, l, {}))
      assert.equal("bad argument #2 to 'wrap_tls' (hostname is required to "
        .. "verify the server (or pass verify = false))",
        msg(loom.wrap_tls, { receive = 1, send = 1 }, {}))
      assert.equal("bad argument #3 to 'connect_tcp' (alpn must be an array "
        .. "of strings, got string)", msg(loom.connect_tcp, "localhost", 1,
          { tls = { alpn = "h2" } }))
      assert.equal("bad argument #3 to 'connect_tcp' (unknown option 'tsl')",
        msg(loom.connect_tcp, "localhost", 1, { tsl = true }))
      assert.equal("bad argument #2 to 'tls_listener' (unknown option "
        .. "'cert')", msg(loom.tls_listener, l, { cert = C.server_cert }))
      local tl = loom.tls_listener(l, { certfile = C.server_cert,
        keyfile = C.server_key })
      assert.equal("loom.TLSListener has no method 'acept' (did you mean "
        .. "'accept'?)", msg(function() return tl.acept end))
      local e = tls_error(loom.tls_listener, l, { certfile = "/nonexistent" })
      H.contains(e.message, "TLS setup failed")
      e = tls_error(loom.connect_tcp, "localhost", 1,
        { tls = { cafile = "/nonexistent" } })
      H.contains(e.message, "TLS setup failed")
      l:close()
    end)
  end)
end)
