-- loom.buffered (net.lua): receive_exactly and receive_until over any
-- stream, checked against a scripted fake stream and once over TCP.
local loom = require("loom")

local H = require("helpers")
local err_of = H.capture_error

-- A stream whose receive(max) hands out `chunks` in order (cut to max),
-- then raises EndOfStream. A chunk `false` blocks forever. Records the
-- max_bytes of each receive and what was sent.
local function fake(chunks)
  local s = { asked = {}, sent = {} }
  function s.receive(self, max)
    loom.checkpoint()
    self.asked[#self.asked + 1] = max
    local c = table.remove(chunks, 1)
    if c == nil then error(loom.EndOfStream("fake: end"), 0) end
    if c == false then loom.sleep_forever() end
    if #c > max then
      table.insert(chunks, 1, c:sub(max + 1))
      c = c:sub(1, max)
    end
    return c
  end
  function s.send(self, d) self.sent[#self.sent + 1] = d end
  function s.send_eof(self) self.eof = true end
  function s.close(self) self.closed = true end
  function s.local_address() return "here", 1 end
  function s.remote_address() return "there", 2 end
  return s
end

describe("loom.buffered", function()
  it("receive_exactly gathers exactly n bytes over several receives",
    function()
      loom.run(function()
        local f = fake({ "ab", "cde", "f" })
        local b = loom.buffered(f)
        assert.equal("abcd", b:receive_exactly(4))
        assert.equal("", b.buffer)
        assert.equal("ef", b:receive_exactly(2))
        assert.equal("", b:receive_exactly(0))
        -- it asks the stream only for what is missing
        assert.same({ 4, 2, 2, 1 }, f.asked)
      end)
    end)

  it("receive_exactly raises IncompleteRead (an EndOfStream) at the end",
    function()
      loom.run(function()
        local b = loom.buffered(fake({ "ab" }))
        local e = err_of(b.receive_exactly, b, 5)
        assert.is_true(loom.is(e, loom.IncompleteRead))
        assert.is_true(loom.is(e, loom.EndOfStream))
        assert.equal("The stream was closed before the read operation could "
          .. "be completed", e.message)
        assert.equal("fake: end", e.cause.message)
        assert.equal("ab", b.buffer)  -- what arrived is kept
      end)
    end)

  it("receive_until splits on a delimiter cut across chunks", function()
    loom.run(function()
      local b = loom.buffered(fake({ "GET / HT", "TP/1.0\r",
        "\nHost: x\r\n\r", "\nbody" }))
      assert.equal("GET / HTTP/1.0", b:receive_until("\r\n", 100))
      assert.equal("Host: x", b:receive_until("\r\n", 100))
      assert.equal("", b:receive_until("\r\n", 100))
      assert.equal("body", b.buffer)
    end)
  end)

  it("receive_until handles multi-byte delimiters that overlap", function()
    loom.run(function()
      local b = loom.buffered(fake({ "a-", "-b-", "--c" }))
      assert.equal("a", b:receive_until("--", 100))
      assert.equal("b", b:receive_until("--", 100))
      assert.equal("-c", b.buffer)
    end)
  end)

  it("receive_until raises DelimiterNotFound after max_bytes", function()
    loom.run(function()
      -- at most max_bytes before the delimiter, however it is chunked
      local b = loom.buffered(fake({ "abcd", "\nrest" }))
      assert.equal("abcd", b:receive_until("\n", 4))
      b = loom.buffered(fake({ "abcd\nrest" }))
      assert.equal("abcd", b:receive_until("\n", 4))
      b = loom.buffered(fake({ "ab", "cd\r", "\n" }))
      assert.equal("abcd", b:receive_until("\r\n", 4))
      b = loom.buffered(fake({ "abcd", "\nrest" }))
      local e = err_of(b.receive_until, b, "\n", 3)
      assert.is_true(loom.is(e, loom.DelimiterNotFound))
      assert.equal("The delimiter was not found among the first 3 bytes",
        e.message)
      assert.equal(3, e.max_bytes)
      assert.equal("DelimiterNotFound: " .. e.message, tostring(e))
      -- a delimiter beyond max_bytes in the same chunk does not count
      b = loom.buffered(fake({ "abcdef\n" }))
      assert.is_true(loom.is(err_of(b.receive_until, b, "\n", 3),
        loom.DelimiterNotFound))
    end)
  end)

  it("receive_until raises IncompleteRead if the stream ends first",
    function()
      loom.run(function()
        local b = loom.buffered(fake({ "no newline" }))
        local e = err_of(b.receive_until, b, "\n", 100)
        assert.is_true(loom.is(e, loom.IncompleteRead))
        assert.equal("no newline", b.buffer)
      end)
    end)

  it("receive returns buffered bytes first, then reads the stream",
    function()
      loom.run(function()
        local b = loom.buffered(fake({ "head\nrest", "more" }))
        assert.equal("head", b:receive_until("\n", 100))
        assert.equal("re", b:receive(2))
        assert.equal("st", b:receive())
        assert.equal("more", b:receive())
        assert.is_true(loom.is(err_of(b.receive, b), loom.EndOfStream))
      end)
    end)

  it("every read is a checkpoint, also when served from the buffer",
    function()
      loom.run(function()
        local b = loom.buffered(fake({ "line\nline\nline\n" }))
        assert.equal("line", b:receive_until("\n", 100))
        local scope = loom.cancel_scope()
        scope:run(function()
          scope:cancel()
          assert.is_true(loom.is_cancelled(
            err_of(b.receive_until, b, "\n", 100)))
          assert.is_true(loom.is_cancelled(err_of(b.receive_exactly, b, 2)))
          assert.is_true(loom.is_cancelled(err_of(b.receive, b)))
        end)
        assert.equal("line\nline\n", b.buffer)  -- nothing consumed
      end)
    end)

  it("keeps what arrived when a read is cancelled midway", function()
    loom.run(function()
      local b = loom.buffered(fake({ "part", false }))
      local scope = loom.move_on_after(0.01, function()
        b:receive_exactly(10)
      end)
      assert.is_true(scope.cancelled_caught)
      assert.equal("part", b.buffer)
    end)
  end)

  it("passes send, send_eof, close and addresses through", function()
    loom.run(function()
      local f = fake({})
      do
        local b <close> = loom.buffered(f)
        b:send("x")
        b:send_eof()
        assert.same({ "here", 1 }, { b:local_address() })
        assert.same({ "there", 2 }, { b:remote_address() })
        assert.matches("^loom.BufferedStream: 0 bytes buffered over ",
          tostring(b))
      end
      assert.same({ "x" }, f.sent)
      assert.is_true(f.eof)
      assert.is_true(f.closed)
    end)
  end)

  it("rejects bad arguments", function()
    loom.run(function()
      local b = loom.buffered(fake({}))
      for _, case in ipairs({
        { function() loom.buffered() end,
          "bad argument #1 to 'buffered' (stream expected, got no value)" },
        { function() loom.buffered(42) end,
          "bad argument #1 to 'buffered' (stream expected, got number)" },
        { function() b:receive_exactly(-1) end,
          "bad argument #1 to 'receive_exactly' (nbytes must not be "
          .. "negative)" },
        { function() b:receive_exactly("x") end,
          "bad argument #1 to 'receive_exactly' (nbytes must be an integer, "
          .. "got string)" },
        { function() b:receive_until("", 10) end,
          "bad argument #1 to 'receive_until' (delimiter is empty)" },
        { function() b:receive_until(nil, 10) end,
          "bad argument #1 to 'receive_until' (string expected, got no "
          .. "value)" },
        { function() b:receive_until("\n") end,
          "bad argument #2 to 'receive_until' (max_bytes must be an integer, "
          .. "got no value)" },
        { function() b:receive_until("\n", 0) end,
          "bad argument #2 to 'receive_until' (max_bytes must be at least 1)" },
        { function() b:receive(0) end,
          "bad argument #1 to 'receive' (max_bytes must be at least 1)" },
        { function() b.receive_exactly({}, 1) end,
          "calling 'receive_exactly' on bad self (loom.BufferedStream "
          .. "expected, got table)" },
      }) do
        assert.has_error(case[1], case[2])
      end
    end)
  end)

  it("reads lines from a TCP stream", function()
    loom.run(function()
      local l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
      local _, port = l:local_address()
      local c = loom.connect_tcp("127.0.0.1", port)
      local s <close> = loom.buffered(l:accept())
      c:send("one\ntwo\nthree")
      c:send("\n" .. string.rep("z", 100000))
      c:close()
      assert.equal("one", s:receive_until("\n", 100))
      assert.equal("two", s:receive_until("\n", 100))
      assert.equal("three", s:receive_until("\n", 100))
      assert.equal(string.rep("z", 100000), s:receive_exactly(100000))
      assert.is_true(loom.is(err_of(s.receive_exactly, s, 1),
        loom.IncompleteRead))
      l:close()
    end)
  end)
end)
