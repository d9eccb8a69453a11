-- loom.channel(): ported from AnyIO tests/streams/test_memory.py and Trio
-- _tests/test_channel.py, with Trio's side where they differ (closing an end
-- wakes the tasks blocked on that very end with ClosedResourceError).
local loom = require("loom")

local H = require("helpers")
local raises, fails_with = H.raises, H.fails_with

-- Run body(tg) in a task group that must fail with exactly one error of
-- class cls; returns it.
local function group_fails_with(cls, body)
  local ok, eg = pcall(loom.task_group, body)
  assert.is_false(ok, "expected the group to fail")
  assert.is_true(loom.is(eg, loom.ErrorGroup), tostring(eg))
  assert.equal(1, #eg.errors)
  assert.is_true(loom.is(eg.errors[1], cls), tostring(eg.errors[1]))
  return eg.errors[1]
end

-- Count how many times fn switches to another task (a checkpoint does).
local function switches(fn)
  local ticks, done = 0, false
  loom.task_group(function(tg)
    tg:start_soon(function()
      while not done do
        ticks = ticks + 1
        loom.checkpoint()
      end
    end)
    loom.checkpoint()
    ticks = 0
    fn()
    done = true
  end)
  return ticks
end

describe("loom.channel", function()
  describe("creation", function()
    it("rejects bad sizes with AnyIO's words", function()
      local bad_int = "max_buffer_size must be either an integer or math.inf"
      fails_with(bad_int, loom.channel, 1.5)
      fails_with(bad_int, loom.channel, "1")
      fails_with(bad_int, loom.channel, 0 / 0)
      fails_with(bad_int, loom.channel, -math.huge)
      fails_with(bad_int, loom.channel, {})
      fails_with("max_buffer_size cannot be negative", loom.channel, -1)
    end)

    it("defaults to a rendezvous channel", function()
      local s, r = loom.channel()
      assert.equal(0, s:statistics().max_buffer_size)
      assert.equal(2, math.tointeger(loom.channel(2.0):statistics()
        .max_buffer_size))
      assert.equal(math.huge, select(2, loom.channel(math.huge))
        :statistics().max_buffer_size)
      s:close()
      r:close()
    end)
  end)

  it("delivers to a waiting receiver (test_receive_then_send)", function()
    local received = {}
    loom.run(function()
      local send, receive = loom.channel(0)
      loom.task_group(function(tg)
        tg:start_soon(function()
          received[#received + 1] = receive:receive()
          received[#received + 1] = receive:receive()
        end)
        loom.wait_all_tasks_blocked()
        send:send("hello")
        send:send("loom")
      end)
    end)
    assert.same({ "hello", "loom" }, received)
  end)

  it("send_nowait hands items to waiting receivers in order "
    .. "(test_receive_then_send_nowait)", function()
    local received = {}
    loom.run(function()
      local send, receive = loom.channel(0)
      loom.task_group(function(tg)
        for i = 1, 2 do
          tg:start_soon(function() received[i] = receive:receive() end)
        end
        loom.wait_all_tasks_blocked()
        send:send_nowait("hello")
        send:send_nowait("loom")
      end)
    end)
    assert.same({ "hello", "loom" }, received)
  end)

  it("receive_nowait takes a waiting sender's item "
    .. "(test_send_then_receive_nowait)", function()
    loom.run(function()
      local send, receive = loom.channel(0)
      loom.task_group(function(tg)
        tg:start_soon(send.send, send, "hello")
        loom.wait_all_tasks_blocked()
        assert.equal("hello", receive:receive_nowait())
      end)
    end)
  end)

  it("keeps send order when a waiting sender is unblocked "
    .. "(test_send_is_unblocked_after_receive_nowait)", function()
    loom.run(function()
      local send, receive = loom.channel(1)
      send:send_nowait("hello")
      loom.fail_after(1, function()
        loom.task_group(function(tg)
          tg:start_soon(send.send, send, "loom")
          loom.wait_all_tasks_blocked()
          assert.equal("hello", receive:receive_nowait())
          assert.equal(1, send:statistics().current_buffer_used)
        end)
      end)
      assert.equal("loom", receive:receive_nowait())
    end)
  end)

  it("buffers up to max_buffer_size (test_send_nowait_then_receive_nowait)",
    function()
      local send, receive = loom.channel(2)
      send:send_nowait("hello")
      send:send_nowait("loom")
      raises(loom.WouldBlock, send.send_nowait, send, "more")
      assert.equal("hello", receive:receive_nowait())
      assert.equal("loom", receive:receive_nowait())
      raises(loom.WouldBlock, receive.receive_nowait, receive)
    end)

  it("iterates with for-in until every send end is closed (test_iterate)",
    function()
      local received = {}
      loom.run(function()
        local send, receive = loom.channel()
        loom.task_group(function(tg)
          tg:start_soon(function()
            for item in receive do received[#received + 1] = item end
            received[#received + 1] = "end"
          end)
          send:send("hello")
          send:send(false)
          send:close()
        end)
      end)
      assert.same({ "hello", false, "end" }, received)
    end)

  it("gives EndOfStream after the send end closes, ClosedResourceError "
    .. "on the closed end (test_receive_send_closed_send_stream)", function()
    loom.run(function()
      local send, receive = loom.channel()
      send:close()
      local err = raises(loom.EndOfStream, receive.receive_nowait, receive)
      assert.equal("EndOfStream: every send channel is closed", tostring(err))
      raises(loom.EndOfStream, receive.receive, receive)
      raises(loom.ClosedResourceError, send.send, send, "x")
      receive:close()
    end)
  end)

  it("breaks senders once the receive end closes "
    .. "(test_receive_send_closed_receive_stream)", function()
    loom.run(function()
      local send, receive = loom.channel()
      receive:close()
      raises(loom.ClosedResourceError, receive.receive_nowait, receive)
      local err = raises(loom.BrokenResourceError, send.send, send, "x")
      assert.equal("BrokenResourceError: every receive channel is closed",
        tostring(err))
      raises(loom.BrokenResourceError, send.send_nowait, send, "x")
      send:close()
    end)
  end)

  it("drops a cancelled receiver (test_cancel_receive)", function()
    loom.run(function()
      local send, receive = loom.channel()
      loom.task_group(function(tg)
        tg:start_soon(receive.receive, receive)
        loom.wait_all_tasks_blocked()
        tg:cancel()
      end)
      raises(loom.WouldBlock, send.send_nowait, send, "hello")
    end)
  end)

  it("withdraws a cancelled sender's item (test_cancel_send)", function()
    loom.run(function()
      local send, receive = loom.channel()
      loom.task_group(function(tg)
        tg:start_soon(send.send, send, "hello")
        loom.wait_all_tasks_blocked()
        tg:cancel()
      end)
      raises(loom.WouldBlock, receive.receive_nowait, receive)
    end)
  end)

  it("keeps the channel open while a clone is open (test_clone)", function()
    local send1, receive1 = loom.channel(1)
    local send2 = send1:clone()
    local receive2 = receive1:clone()
    send1:close()
    receive1:close()
    send2:send_nowait("hello")
    assert.equal("hello", receive2:receive_nowait())
  end)

  it("refuses to clone a closed end (test_clone_closed)", function()
    local send, receive = loom.channel(1)
    send:close()
    receive:close()
    raises(loom.ClosedResourceError, send.clone, send)
    raises(loom.ClosedResourceError, receive.clone, receive)
  end)

  it("ends the stream for a waiting receiver "
    .. "(test_close_send_while_receiving)", function()
    loom.run(function()
      local send, receive = loom.channel(1)
      group_fails_with(loom.EndOfStream, function(tg)
        tg:start_soon(receive.receive, receive)
        loom.wait_all_tasks_blocked()
        send:close()
      end)
    end)
  end)

  it("breaks a waiting sender (test_close_receive_while_sending)",
    function()
      loom.run(function()
        local send, receive = loom.channel(0)
        group_fails_with(loom.BrokenResourceError, function(tg)
          tg:start_soon(send.send, send, false)
          loom.wait_all_tasks_blocked()
          receive:close()
        end)
      end)
    end)

  it("delivers buffered items before EndOfStream "
    .. "(test_receive_after_send_closed)", function()
    loom.run(function()
      local send, receive = loom.channel(1)
      send:send("hello")
      send:close()
      assert.equal("hello", receive:receive())
      raises(loom.EndOfStream, receive.receive, receive)
    end)
  end)

  it("consumes nothing in a cancelled scope (test_receive_when_cancelled)",
    function()
      loom.run(function()
        local send, receive = loom.channel()
        loom.task_group(function(tg)
          tg:start_soon(send.send, send, "hello")
          loom.wait_all_tasks_blocked()
          tg:start_soon(send.send, send, "world")
          loom.wait_all_tasks_blocked()
          local scope = loom.cancel_scope()
          scope:run(function()
            scope:cancel()
            receive:receive()
          end)
          assert.equal("hello", receive:receive())
          assert.equal("world", receive:receive())
        end)
      end)
    end)

  it("sends nothing in a cancelled scope (test_send_when_cancelled)",
    function()
      local received = {}
      loom.run(function()
        local send, receive = loom.channel()
        loom.task_group(function(tg)
          tg:start_soon(function()
            received[#received + 1] = receive:receive()
          end)
          local scope = loom.cancel_scope()
          scope:run(function()
            scope:cancel()
            send:send("hello")
          end)
          send:send("world")
        end)
      end)
      assert.same({ "world" }, received)
    end)

  it("returns an item delivered before the cancel arrives "
    .. "(test_cancel_during_receive)", function()
    local received = {}
    loom.run(function()
      local send <close>, receive = loom.channel()
      loom.task_group(function(tg)
        local scope = tg:start(function(task_status)
          local s = loom.cancel_scope()
          s:run(function()
            task_status:started(s)
            received[#received + 1] = receive:receive()
          end)
        end)
        loom.wait_all_tasks_blocked()
        send:send_nowait("hello")
        scope:cancel()
      end)
      receive:close()
    end)
    assert.same({ "hello" }, received)
  end)

  it("skips a receiver whose cancellation is pending "
    .. "(test_cancel_during_receive_buffered)", function()
    loom.run(function()
      local send, receive = loom.channel(1)
      loom.task_group(function(tg)
        local scope = tg:start(function(task_status)
          local s = loom.cancel_scope()
          s:run(function()
            task_status:started(s)
            receive:receive()
          end)
        end)
        loom.wait_all_tasks_blocked()
        scope:cancel()
        send:send_nowait("item")
      end)
      assert.equal("item", receive:receive_nowait())
    end)
  end)

  it("closes ends with <close> (test_close_receive_after_send, "
    .. "test_sync_close)", function()
    loom.run(function()
      local send_stream, receive_stream = loom.channel()
      loom.task_group(function(tg)
        tg:start_soon(function()
          local s <close> = send_stream
          s:send("test")
        end)
        tg:start_soon(function()
          local r <close> = receive_stream
          assert.equal("test", r:receive())
        end)
      end)
      assert.equal(0, send_stream:statistics().open_send_streams)
      assert.equal(0, send_stream:statistics().open_receive_streams)
    end)
    local send, receive = loom.channel(1)
    do
      local _ <close> = send
      local _ <close> = receive
    end
    raises(loom.ClosedResourceError, send.send_nowait, send, 1)
    raises(loom.ClosedResourceError, receive.receive_nowait, receive)
  end)

  it("reports buffer use and waiters (AnyIO test_statistics)", function()
    loom.run(function()
      local send, receive = loom.channel(1)
      for _, stream in ipairs({ send, receive }) do
        local st = stream:statistics()
        assert.equal(1, st.max_buffer_size)
        assert.equal(0, st.current_buffer_used)
        assert.equal(1, st.open_send_streams)
        assert.equal(1, st.open_receive_streams)
        assert.equal(0, st.tasks_waiting_send)
        assert.equal(0, st.tasks_waiting_receive)
      end
      for _, stream in ipairs({ send, receive }) do
        loom.task_group(function(tg)
          send:send_nowait(false)
          assert.equal(1, stream:statistics().current_buffer_used)
          tg:start_soon(send.send, send, false)
          loom.wait_all_tasks_blocked()
          assert.equal(1, stream:statistics().current_buffer_used)
          assert.equal(1, stream:statistics().tasks_waiting_send)
          receive:receive_nowait()
          assert.equal(1, stream:statistics().current_buffer_used)
          assert.equal(0, stream:statistics().tasks_waiting_send)
          receive:receive_nowait()
          assert.equal(0, stream:statistics().current_buffer_used)
          tg:start_soon(receive.receive, receive)
          loom.wait_all_tasks_blocked()
          assert.equal(1, stream:statistics().tasks_waiting_receive)
          send:send_nowait(false)
          assert.equal(0, stream:statistics().tasks_waiting_receive)
        end)
        loom.task_group(function(tg)
          send:send_nowait(false)
          assert.equal(0, stream:statistics().tasks_waiting_send)
          for _ = 1, 3 do tg:start_soon(send.send, send, false) end
          loom.wait_all_tasks_blocked()
          assert.equal(3, stream:statistics().tasks_waiting_send)
          for i = 2, 0, -1 do
            receive:receive_nowait()
            assert.equal(i, stream:statistics().tasks_waiting_send)
          end
          receive:receive_nowait()
        end)
        assert.equal(0, stream:statistics().current_buffer_used)
        assert.equal(0, stream:statistics().tasks_waiting_send)
        assert.equal(0, stream:statistics().tasks_waiting_receive)
      end
    end)
  end)

  it("counts clones and drops cancelled waiters (Trio test_statistics)",
    function()
      loom.run(function()
        local s, r = loom.channel(2)
        assert.same(s:statistics(), r:statistics())
        assert.equal(0, s:statistics().peak_buffer_used)
        s:send_nowait(1)
        assert.equal(1, s:statistics().current_buffer_used)
        assert.equal(1, s:statistics().peak_buffer_used)
        local s2 = s:clone()
        assert.equal(2, s:statistics().open_send_streams)
        s:close()
        assert.equal(1, s2:statistics().open_send_streams)
        local r2 = r:clone()
        assert.equal(2, s2:statistics().open_receive_streams)
        r2:close()
        assert.equal(1, s2:statistics().open_receive_streams)
        loom.task_group(function(tg)
          s2:send_nowait(2)
          assert.equal(2, s:statistics().current_buffer_used)
          assert.equal(2, s:statistics().peak_buffer_used)
          tg:start_soon(s2.send, s2, 3)
          tg:start_soon(s2.send, s2, 4)
          loom.wait_all_tasks_blocked()
          assert.equal(2, s:statistics().tasks_waiting_send)
          tg:cancel()
        end)
        assert.equal(0, s:statistics().tasks_waiting_send)
        while pcall(r.receive_nowait, r) do end
        assert.equal(0, s:statistics().current_buffer_used)
        assert.equal(2, s:statistics().peak_buffer_used)
        loom.task_group(function(tg)
          tg:start_soon(r.receive, r)
          loom.wait_all_tasks_blocked()
          assert.equal(1, s:statistics().tasks_waiting_receive)
          tg:cancel()
        end)
        assert.equal(0, s:statistics().tasks_waiting_receive)
      end)
    end)

  it("follows Trio's test_channel sequence, checkpoints included",
    function()
      loom.run(function()
        local s, r = loom.channel(2)
        s:send_nowait(1)
        assert.equal(1, switches(function() s:send(2) end))
        raises(loom.WouldBlock, s.send_nowait, s, "x")
        local got
        assert.equal(1, switches(function() got = r:receive() end))
        assert.equal(1, got)
        assert.equal(2, r:receive_nowait())
        raises(loom.WouldBlock, r.receive_nowait, r)
        s:send_nowait("last")
        s:close()
        raises(loom.ClosedResourceError, s.send, s, "too late")
        raises(loom.ClosedResourceError, s.send_nowait, s, "too late")
        raises(loom.ClosedResourceError, s.clone, s)
        s:close()
        assert.equal("last", r:receive_nowait())
        raises(loom.EndOfStream, r.receive, r)
        r:close()
        raises(loom.ClosedResourceError, r.receive, r)
        raises(loom.ClosedResourceError, r.receive_nowait, r)
        r:close()
      end)
    end)

  it("can send after a receive timed out (Trio test_553)", function()
    loom.run(function()
      local s, r = loom.channel(1)
      local scope = loom.move_on_after(0.01, function() r:receive() end)
      assert.is_true(scope.cancelled_caught)
      s:send("Test for PR #553")
      assert.equal("Test for PR #553", r:receive_nowait())
    end)
  end)

  it("serves many producers through clones "
    .. "(Trio test_channel_multiple_producers)", function()
    local got = {}
    loom.run(function()
      local send, receive = loom.channel(0)
      loom.task_group(function(tg)
        do
          local _ <close> = send
          for i = 0, 9 do
            tg:start_soon(function(ch)
              local c <close> = ch
              for j = 3 * i, 3 * (i + 1) - 1 do c:send(j) end
            end, send:clone())
          end
        end
        for v in receive do got[#got + 1] = v end
      end)
    end)
    table.sort(got)
    local want = {}
    for i = 0, 29 do want[#want + 1] = i end
    assert.same(want, got)
  end)

  it("shares items between consumers, no broadcast "
    .. "(Trio test_channel_multiple_consumers)", function()
    local receivers, received = {}, {}
    loom.run(function()
      loom.task_group(function(tg)
        local send, receive = loom.channel(1)
        local _ <close> = send
        for i = 1, 5 do
          tg:start_soon(function()
            for v in receive do
              receivers[i] = true
              received[#received + 1] = v
            end
          end)
        end
        loom.wait_all_tasks_blocked()
        for i = 0, 9 do send:send(i) end
      end)
    end)
    for i = 1, 5 do assert.is_true(receivers[i]) end
    table.sort(received)
    assert.same({ 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 }, received)
  end)

  describe("closing while blocked (Trio test_close_basics)", function()
    it("closing a send end wakes its own blocked sender with "
      .. "ClosedResourceError", function()
      loom.run(function()
        local s, r = loom.channel(0)
        loom.task_group(function(tg)
          tg:start_soon(function()
            raises(loom.ClosedResourceError, s.send, s, "x")
          end)
          loom.wait_all_tasks_blocked()
          s:close()
        end)
        raises(loom.ClosedResourceError, s.send_nowait, s, "x")
        raises(loom.ClosedResourceError, s.send, s, "x")
        raises(loom.EndOfStream, r.receive_nowait, r)
        raises(loom.EndOfStream, r.receive, r)
      end)
    end)

    it("closing the receive end breaks blocked senders, persistently",
      function()
        loom.run(function()
          local s, r = loom.channel(0)
          loom.task_group(function(tg)
            tg:start_soon(function()
              raises(loom.BrokenResourceError, s.send, s, "x")
            end)
            loom.wait_all_tasks_blocked()
            r:close()
          end)
          raises(loom.BrokenResourceError, s.send_nowait, s, "x")
          raises(loom.BrokenResourceError, s.send, s, "x")
        end)
      end)

    it("closing a receive end wakes its own blocked receiver with "
      .. "ClosedResourceError", function()
      loom.run(function()
        local _, r = loom.channel(0)
        loom.task_group(function(tg)
          tg:start_soon(function()
            raises(loom.ClosedResourceError, r.receive, r)
          end)
          loom.wait_all_tasks_blocked()
          r:close()
        end)
        raises(loom.ClosedResourceError, r.receive_nowait, r)
        raises(loom.ClosedResourceError, r.receive, r)
      end)
    end)

    it("ends a for-loop on a closed receive end with ClosedResourceError",
      function()
        loom.run(function()
          local s, r = loom.channel(0)
          local err = group_fails_with(loom.ClosedResourceError, function(tg)
            tg:start_soon(function() for _ in r do end end)
            loom.wait_all_tasks_blocked()
            r:close()
          end)
          assert.equal("ClosedResourceError: this receive channel is closed",
            tostring(err))
          s:close()
        end)
      end)

    it("wakes only the tasks blocked on the closed clone "
      .. "(test_close_multiple_send_handles)", function()
      loom.run(function()
        local s1, r = loom.channel(0)
        local s2 = s1:clone()
        loom.task_group(function(tg)
          tg:start_soon(function()
            raises(loom.ClosedResourceError, s1.send, s1, "nope")
          end)
          tg:start_soon(function() s2:send("ok") end)
          loom.wait_all_tasks_blocked()
          s1:close()
          assert.equal("ok", r:receive())
        end)
      end)
    end)

    it("wakes only the receivers blocked on the closed clone "
      .. "(test_close_multiple_receive_handles)", function()
      loom.run(function()
        local s, r1 = loom.channel(0)
        local r2 = r1:clone()
        loom.task_group(function(tg)
          tg:start_soon(function()
            raises(loom.ClosedResourceError, r1.receive, r1)
          end)
          tg:start_soon(function() assert.equal("ok", r2:receive()) end)
          loom.wait_all_tasks_blocked()
          r1:close()
          s:send("ok")
        end)
      end)
    end)
  end)

  it("counts receive clones before breaking (Trio "
    .. "test_receive_channel_clone_and_close)", function()
    local s, r = loom.channel(10)
    local r2, r3 = r:clone(), r:clone()
    s:send_nowait(true)
    r:close()
    do local _ <close> = r2 end
    raises(loom.ClosedResourceError, r.clone, r)
    raises(loom.ClosedResourceError, r2.clone, r2)
    s:send_nowait(true)
    assert.equal(2, s:statistics().current_buffer_used)
    r3:close()
    raises(loom.BrokenResourceError, s.send_nowait, s, true)
    -- buffered items are dropped with the last receive end
    assert.equal(0, s:statistics().current_buffer_used)
  end)

  it("never blocks a send when unbounded (test_inf_capacity)", function()
    local got = {}
    loom.run(function()
      local send, receive = loom.channel(math.huge)
      do
        local _ <close> = send
        for i = 0, 999 do send:send_nowait(i) end
      end
      assert.equal(1000, receive:statistics().peak_buffer_used)
      for i in receive do got[#got + 1] = i end
    end)
    assert.equal(1000, #got)
    for i = 1, 1000 do assert.equal(i - 1, got[i]) end
  end)

  it("gives items to waiting receivers and freed slots to waiting "
    .. "senders first (test_channel_fairness)", function()
    loom.run(function()
      local s, r = loom.channel(1)
      s:send_nowait(1)
      assert.equal(1, r:receive_nowait())
      s:send_nowait(2)
      assert.equal(2, r:receive_nowait())
      local result
      loom.task_group(function(tg)
        tg:start_soon(function() result = r:receive() end)
        loom.wait_all_tasks_blocked()
        s:send_nowait(2)
        raises(loom.WouldBlock, r.receive_nowait, r)
      end)
      assert.equal(2, result)

      s, r = loom.channel(1)
      s:send_nowait(1)
      raises(loom.WouldBlock, s.send_nowait, s, true)
      loom.task_group(function(tg)
        tg:start_soon(s.send, s, 2)
        loom.wait_all_tasks_blocked()
        assert.equal(1, r:receive_nowait())
        raises(loom.WouldBlock, s.send_nowait, s, 3)
        assert.equal(2, r:receive())
      end)
    end)
  end)

  it("is a rendezvous at size 0 (test_unbuffered)", function()
    loom.run(function()
      local s, r = loom.channel(0)
      raises(loom.WouldBlock, r.receive_nowait, r)
      raises(loom.WouldBlock, s.send_nowait, s, 1)
      loom.task_group(function(tg)
        tg:start_soon(s.send, s, 1)
        loom.wait_all_tasks_blocked()
        assert.equal(1, r:receive())
        tg:start_soon(function() assert.equal(2, r:receive()) end)
        loom.wait_all_tasks_blocked()
        s:send(2)
      end)
      assert.equal(0, s:statistics().peak_buffer_used)
    end)
  end)

  it("keeps buffered items in order across ring wrap-around and growth",
    function()
      -- A seeded random mix of send_nowait/receive_nowait checked against a
      -- plain queue, for several buffer sizes.
      local seed = 7
      local function random()
        seed = seed * 48271 % 2147483647
        return seed / 2147483647
      end
      for _, size in ipairs({ 1, 3, 5, math.huge }) do
        local s, r = loom.channel(size)
        local ref, head, tail = {}, 1, 0
        for step = 1, 500 do
          local n = tail - head + 1
          if random() < 0.55 then
            local ok = pcall(s.send_nowait, s, step)
            assert.equal(n < size, ok)
            if ok then
              tail = tail + 1
              ref[tail] = step
            end
          else
            local ok, v = pcall(r.receive_nowait, r)
            assert.equal(n > 0, ok)
            if ok then
              assert.equal(ref[head], v)
              head = head + 1
            end
          end
          assert.equal(tail - head + 1, s:statistics().current_buffer_used)
        end
      end
      local s, r = loom.channel(math.huge)
      for i = 1, 1000 do s:send_nowait(i) end
      for i = 1, 1000 do assert.equal(i, r:receive_nowait()) end
      s:send_nowait("after the burst")
      assert.equal("after the burst", r:receive_nowait())
    end)

  it("keeps FIFO order for waiting senders and receivers", function()
    loom.run(function()
      local s, r = loom.channel(0)
      local got = {}
      loom.task_group(function(tg)
        for i = 1, 3 do tg:start_soon(s.send, s, i) end
        loom.wait_all_tasks_blocked()
        for _ = 1, 3 do got[#got + 1] = r:receive() end
        for i = 1, 3 do
          tg:start_soon(function()
            local v = r:receive()
            got[#got + 1] = "r" .. i .. "=" .. v
          end)
        end
        loom.wait_all_tasks_blocked()
        for i = 4, 6 do s:send_nowait(i) end
      end)
      assert.same({ 1, 2, 3, "r1=4", "r2=5", "r3=6" }, got)
    end)
  end)

  it("refuses nil and checks its handles", function()
    local s, r = loom.channel(1)
    fails_with("bad argument #1 to 'send_nowait' (cannot send nil",
      function() s:send_nowait(nil) end)
    fails_with("bad argument #1 to 'send_nowait' (cannot send nil",
      function() s:send_nowait() end)
    loom.run(function()
      fails_with("bad argument #1 to 'send' (cannot send nil",
        function() s:send(nil) end)
    end)
    fails_with("loom.SendChannel expected, got loom.ReceiveChannel",
      s.send_nowait, r, 1)
    fails_with("loom.ReceiveChannel expected, got loom.SendChannel",
      r.receive_nowait, s)
    fails_with("loom.SendChannel:send: must be called from inside a loom task",
      s.send, s, 1)
    fails_with("loom.ReceiveChannel:receive: must be called from inside a "
      .. "loom task", r.receive, r)
    assert.matches("^loom%.SendChannel: 0x%x+ %(open, 0 of 1 buffered%)$",
      tostring(s))
    r:close()
    assert.matches("^loom%.ReceiveChannel: 0x%x+ %(closed, 0 of 1 "
      .. "buffered%)$", tostring(r))
    assert.matches("%(open, 0 buffered, unbounded%)$",
      tostring(loom.channel(math.huge)))
  end)

  it("runs examples/pipeline.lua", function()
    local lines = {}
    local env = setmetatable({
      print = function(...) lines[#lines + 1] = table.concat({ ... }, "\t") end,
    }, { __index = _G })
    assert(loadfile("examples/pipeline.lua", "t", env))()
    assert.equal(11, #lines)
    assert.equal("  3 + 4   = 7", lines[1])
    assert.equal(" 40 + 2   = 42", lines[10])
    assert.equal("10 lines through 3 stages; no channel held more than 2 "
      .. "items: true", lines[11])
  end)
end)
