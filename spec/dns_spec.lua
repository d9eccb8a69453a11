-- loom.getaddrinfo (dns.c) on libuv's resolver. Only numeric addresses,
-- "localhost" (the hosts file) and names the resolver rejects locally.
local loom = require("loom")
local core = require("loom.core")

local H = require("helpers")
local err_of = H.capture_error

-- Wait (bounded) until no libuv request is pending: an orphaned lookup
-- finishes in the thread pool and its callback frees it.
local function wait_no_requests()
  for _ = 1, 200 do
    if core.tcp_stats().active_reqs == 0 then return end
    loom.sleep(0.005)
  end
  error("a getaddrinfo request is still pending")
end

describe("loom.getaddrinfo", function()
  it("returns numeric IPv4 and IPv6 addresses as given", function()
    loom.run(function()
      assert.same({ { family = "inet", address = "127.0.0.1", port = 8080 } },
        loom.getaddrinfo("127.0.0.1", 8080))
      assert.same({ { family = "inet6", address = "::1", port = 443 } },
        loom.getaddrinfo("::1", 443))
    end)
  end)

  it("resolves localhost from the hosts file, without duplicates", function()
    loom.run(function()
      local r = loom.getaddrinfo("localhost", 80)
      local seen, found = {}, false
      assert.is_true(#r >= 1)
      for _, a in ipairs(r) do
        assert.is_true(a.family == "inet" or a.family == "inet6")
        assert.equal(80, a.port)
        assert.is_nil(seen[a.address])
        seen[a.address] = true
        if a.address == "127.0.0.1" then
          assert.equal("inet", a.family)
          found = true
        end
      end
      assert.is_true(found)
    end)
  end)

  it("uses port 0 when no port is given", function()
    loom.run(function()
      assert.same({ { family = "inet", address = "127.0.0.1", port = 0 } },
        loom.getaddrinfo("127.0.0.1"))
    end)
  end)

  it("raises OSError EAI_NONAME for a name that does not resolve", function()
    loom.run(function()
      local e = err_of(loom.getaddrinfo, "bad..host", 80)
      assert.is_true(loom.is(e, loom.OSError))
      assert.equal("EAI_NONAME", e.code)
      assert.equal("getaddrinfo: unknown node or service (bad..host)",
        e.message)
      local long = string.rep("a", 64) .. ".test"  -- a label over 63 bytes
      assert.equal("EAI_NONAME", err_of(loom.getaddrinfo, long, 80).code)
      wait_no_requests()
    end)
  end)

  it("rejects bad arguments", function()
    loom.run(function()
      for _, case in ipairs({
        { { nil, 80 }, "bad argument #1 to 'getaddrinfo' (string expected, "
          .. "got nil)" },
        { { {}, 80 }, "bad argument #1 to 'getaddrinfo' (string expected, "
          .. "got table)" },
        { { "", 80 }, "bad argument #1 to 'getaddrinfo' (host is empty)" },
        { { "a\0b", 80 }, "bad argument #1 to 'getaddrinfo' (host contains "
          .. "a NUL)" },
        { { string.rep("a", 2000), 80 }, "bad argument #1 to 'getaddrinfo' "
          .. "(host is too long)" },
        { { "localhost", -1 }, "bad argument #2 to 'getaddrinfo' (port must "
          .. "be in 0..65535)" },
        { { "localhost", 65536 }, "bad argument #2 to 'getaddrinfo' (port "
          .. "must be in 0..65535)" },
        { { "localhost", 1.5 }, "bad argument #2 to 'getaddrinfo' (number "
          .. "has no integer representation)" },
        { { "localhost", "http" }, "bad argument #2 to 'getaddrinfo' "
          .. "(number expected, got string)" },
      }) do
        assert.has_error(function()
          loom.getaddrinfo(case[1][1], case[1][2])
        end, case[2])
      end
      assert.equal(0, core.tcp_stats().active_reqs)
    end)
  end)

  it("must be called from a task", function()
    assert.has_error(function() loom.getaddrinfo("localhost", 80) end,
      "loom.getaddrinfo: must be called from inside a loom task (start one "
      .. "with loom.run)")
  end)

  it("raises Cancelled before resolving in a cancelled scope", function()
    loom.run(function()
      local scope = loom.cancel_scope()
      scope:run(function()
        scope:cancel()
        assert.is_true(loom.is_cancelled(
          err_of(loom.getaddrinfo, "localhost", 80)))
        assert.equal(0, core.tcp_stats().active_reqs)
      end)
    end)
  end)

  it("cancels a pending lookup promptly; nothing leaks either way",
    function()
      loom.run(function()
        local outcomes = {}
        for _ = 1, 20 do
          loom.task_group(function(tg)
            local h = tg:start_soon(loom.getaddrinfo, "localhost", 80)
            loom.checkpoint()  -- let it start and park
            h:cancel()
            h:wait()
            -- cancelled while waiting, or the answer was already in
            outcomes[h:status()] = true
          end)
        end
        for status in pairs(outcomes) do
          assert.is_true(status == "cancelled" or status == "finished")
        end
        wait_no_requests()
      end)
    end)

  it("runs many lookups concurrently", function()
    loom.run(function()
      local fns = {}
      for i = 1, 50 do
        fns[i] = function()
          return loom.getaddrinfo(i % 2 == 0 and "localhost" or "127.0.0.1",
            i)[1]
        end
      end
      local r = loom.gather(fns)
      for i = 1, 50 do
        -- localhost may come first as ::1 (a stock Debian /etc/hosts).
        local a = r[i]
        assert.equal(i, a.port)
        if a.family == "inet6" then
          assert.equal("::1", a.address)
        else
          assert.same({ family = "inet", address = "127.0.0.1", port = i }, a)
        end
      end
      wait_no_requests()
    end)
  end)

  it("shows a waiting lookup in the task tree", function()
    loom.run(function()
      loom.task_group(function(tg)
        local h = tg:start_soon(loom.getaddrinfo, "localhost", 80)
        loom.checkpoint()
        local text = tostring(loom.task_tree())
        if not h:done() then
          assert.matches("getaddrinfo", text, 1, true)
        end
        h:cancel()
      end)
      wait_no_requests()
    end)
  end)
end)
