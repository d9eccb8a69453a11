-- loom.step, loom.frame, loom.next_frame: the host-driven runtime, one
-- bounded slice per frame, and the ordering rules a host can rely on.

local loom = require("loom")
local H = require("helpers")
local fresh = require("embed.fresh")

local groups = {}
local function host_group(...)
  local hg = loom.host_group(...)
  groups[#groups + 1] = hg
  return hg
end

describe("loom.step", function()
  after_each(function()
    for _, hg in ipairs(groups) do hg:close(1) end
    groups = {}
    -- Nothing may stay queued for the next test.
    for _ = 1, 3 do loom.step() end
    assert.are.equal(0, (loom.step()))
  end)

  it("returns 0 and nil when nothing is ready or due", function()
    local ready, deadline = loom.step()
    assert.are.equal(0, ready)
    assert.is_nil(deadline)
  end)

  it("counts frames; loom.frame() inside a step is that step's number",
    function()
      local hg = host_group("frames")
      local seen = {}
      local before = loom.frame()
      hg:start_soon(function()
        for _ = 1, 3 do
          seen[#seen + 1] = loom.frame()
          loom.next_frame()
        end
      end)
      for _ = 1, 4 do loom.step() end
      assert.are.same({ before + 1, before + 2, before + 3 }, seen)
      assert.are.equal(before + 4, loom.frame())
    end)

  it("refused calls do not count as frames", function()
    local before = loom.frame()
    assert.has_error(function() loom.step(-1) end)
    assert.has_error(function() loom.step(0, -1) end)
    assert.are.equal(before, loom.frame())
  end)

  it("rule 1: start_soon returns before f runs; f runs in the next step, "
    .. "in spawn order", function()
      local hg = host_group("spawn")
      local log, add = H.log()
      hg:start_soon(function() add("a") end)
      hg:start_soon(function() add("b") end)
      hg:start_soon(function() add("c") end)
      add("spawned")
      loom.step()
      assert.are.same({ "spawned", "a", "b", "c" }, log)
    end)

  it("rule 2: checkpoint() puts the caller at the tail, in the next batch "
    .. "of the same step", function()
      local hg = host_group("fifo")
      local log, add = H.log()
      for _, name in ipairs({ "a", "b" }) do
        hg:start_soon(function()
          for i = 1, 3 do
            add(name .. i)
            loom.checkpoint()
          end
        end)
      end
      loom.step()
      assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
      assert.are.equal(0, hg:alive())
    end)

  it("rule 3: a task woken by an event runs in the same step", function()
    local hg = host_group("wake")
    local log, add = H.log()
    local ev = loom.event()
    hg:start_soon(function() ev:wait(); add("woken") end)
    hg:start_soon(function() add("set"); ev:set() end)
    loom.step()
    assert.are.same({ "set", "woken" }, log)
  end)

  it("rule 3: channel hand-offs and child completions run in the same step",
    function()
      local hg = host_group("chan")
      local log, add = H.log()
      local send, recv = loom.channel(0)
      hg:start_soon(function()
        for v in recv do add("got " .. v) end
        add("closed")
      end)
      hg:start_soon(function()
        for i = 1, 3 do send:send(i) end
        send:close()
      end)
      hg:start_soon(function()
        local h = hg:create_task(function() return 7 end)
        add("result " .. h:result())
      end)
      local ready = loom.step()
      assert.are.equal(0, ready)
      table.sort(log)
      assert.are.same({ "closed", "got 1", "got 2", "got 3", "result 7" }, log)
    end)

  it("rule 5: next_frame() waits for a later step even with budget left",
    function()
      local hg = host_group("nf")
      local log, add = H.log()
      hg:start_soon(function()
        add("before " .. loom.frame())
        loom.next_frame()
        add("after " .. loom.frame())
      end)
      local f = loom.frame()
      loom.step(10, 1000)
      assert.are.same({ "before " .. (f + 1) }, log)
      loom.step()
      assert.are.same({ "before " .. (f + 1), "after " .. (f + 2) }, log)
    end)

  it("next_frame(n) waits for n later frames", function()
    local hg = host_group("nf3")
    local woke
    local f0
    hg:start_soon(function()
      f0 = loom.frame()
      loom.next_frame(3)
      woke = loom.frame()
    end)
    for _ = 1, 5 do loom.step() end
    assert.are.equal(f0 + 3, woke)
  end)

  it("tasks parked in next_frame are not counted as ready", function()
    local hg = host_group("park")
    for _ = 1, 5 do
      hg:start_soon(function() while true do loom.next_frame() end end)
    end
    assert.are.equal(0, (loom.step()))
    assert.are.equal(0, (loom.step()))
    assert.are.equal(5, hg:alive())
  end)

  it("max_resumes bounds the resumes of a step", function()
    local hg = host_group("max")
    local n = 0
    hg:start_soon(function()
      while true do
        n = n + 1
        loom.checkpoint()
      end
    end)
    local ready = loom.step(0, 5)
    assert.are.equal(5, n)
    assert.are.equal(1, ready)
    ready = loom.step(nil, 1)
    assert.are.equal(6, n)
    assert.are.equal(1, ready)
  end)

  it("a task looping on checkpoint() cannot hang the frame: 100 batches",
    function()
      local hg = host_group("spin")
      local n = 0
      hg:start_soon(function()
        while true do
          n = n + 1
          loom.checkpoint()
        end
      end)
      local ready = loom.step()
      assert.are.equal(100, n)
      assert.are.equal(1, ready)
      loom.step(math.huge, math.huge)
      assert.are.equal(200, n)
    end)

  it("the wall-time budget is checked between resumes", function()
    local hg = host_group("budget")
    local n = 0
    for _ = 1, 200 do
      hg:start_soon(function()
        n = n + 1
        H.busy(0.001)
      end)
    end
    local ready = loom.step(0.003)
    assert.is_true(n >= 1 and n < 200, "resumes: " .. n)
    assert.are.equal(200 - n, ready)
  end)

  it("returns the earliest deadline on the runtime clock", function()
    local hg = host_group("deadline")
    hg:start_soon(function() loom.sleep(30) end)
    hg:start_soon(function() loom.sleep(10) end)
    local t0 = loom.now()
    local ready, deadline = loom.step()
    assert.are.equal(0, ready)
    assert.is_true(deadline >= t0 + 10 and deadline < t0 + 11)
  end)

  it("fires real-clock deadlines and I/O without blocking", function()
    local hg = host_group("sleep")
    local done = false
    hg:start_soon(function() loom.sleep(0.01); done = true end)
    loom.step()
    local t0 = loom.now()
    while not done and loom.now() - t0 < 5 do loom.step() end
    assert.is_true(done)
  end)

  it("refuses to run inside a task or inside loom.run", function()
    local hg = host_group("nested")
    local err
    hg:start_soon(function() err = H.capture_error(loom.step) end)
    loom.step()
    assert.are.equal("loom.step: cannot be called from inside a task or "
      .. "while loom.run is running", H.message(err))
    hg:close()
    err = H.capture_error(loom.run, function() loom.step() end)
    assert.are.equal("loom.step: cannot be called from inside a task or "
      .. "while loom.run is running", H.message(err))
  end)

  it("bad budgets and resume counts: nothing runs", function()
    local hg = host_group("bad")
    local ran = false
    hg:start_soon(function() ran = true end)
    local cases = {
      { { -1 }, "bad argument #1 to 'step' (budget must not be negative)" },
      { { 0 / 0 }, "bad argument #1 to 'step' (budget is NaN)" },
      { { 0, -1 }, "bad argument #2 to 'step' (max_resumes must not be "
        .. "negative)" },
      { { 0, 0 / 0 }, "bad argument #2 to 'step' (max_resumes is NaN)" },
      { { 0, 2.5 }, "bad argument #2 to 'step' (max_resumes must be an "
        .. "integer)" },
      { { "x" }, "bad argument #1 to 'step' (number expected, got string)" },
    }
    for _, c in ipairs(cases) do
      local err = H.capture_error(function() loom.step(table.unpack(c[1])) end)
      assert.are.equal(c[2], H.message(err))
    end
    assert.is_false(ran)
    loom.step()
    assert.is_true(ran)
  end)

  it("next_frame: bad counts, outside a task", function()
    local hg = host_group("nfbad")
    local errs = {}
    hg:start_soon(function()
      errs[1] = H.capture_error(function() loom.next_frame(0) end)
      errs[2] = H.capture_error(function() loom.next_frame(1.5) end)
      errs[3] = H.capture_error(function() loom.next_frame("x") end)
    end)
    loom.step()
    assert.are.equal("bad argument #1 to 'next_frame' (frame count must be "
      .. "at least 1)", H.message(errs[1]))
    assert.are.equal("bad argument #1 to 'next_frame' (number has no "
      .. "integer representation)", H.message(errs[2]))
    assert.are.equal("bad argument #1 to 'next_frame' (integer expected, got "
      .. "string)", H.message(errs[3]))
    assert.are.equal("loom.next_frame: must be called from inside a loom "
      .. "task (start one with loom.run)",
      H.message(H.capture_error(loom.next_frame)))
  end)

  it("next_frame is cancellable", function()
    local hg = host_group("nfcancel")
    local log, add = H.log()
    local h = hg:create_task(function()
      local ok, err = pcall(loom.next_frame, 10)
      add(ok and "woke" or (loom.is_cancelled(err) and "cancelled"))
      error(err, 0)
    end)
    hg:start_soon(function()
      loom.move_on_after(0, function() loom.next_frame() end)
      add("moved on")
    end)
    loom.step()
    h:cancel()
    loom.step()
    assert.are.same({ "moved on", "cancelled" }, log)
    assert.are.equal("cancelled", h:status())
    assert.are.equal(0, hg:alive())
  end)

  it("next_frame inside loom.run: one frame per scheduler pass", function()
    local log, add = H.log()
    loom.run(function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          for i = 1, 3 do add("a" .. i); loom.next_frame() end
        end)
        tg:start_soon(function()
          for i = 1, 3 do add("b" .. i); loom.next_frame() end
        end)
      end)
    end)
    assert.are.same({ "a1", "b1", "a2", "b2", "a3", "b3" }, log)
  end)

  it("wait_all_tasks_blocked() wakes within a step once every task is "
    .. "blocked", function()
      local hg = host_group("blocked")
      local log, add = H.log()
      local ev = loom.event()
      hg:start_soon(function() ev:wait(); add("event") end)
      hg:start_soon(function()
        for i = 1, 3 do add("busy " .. i); loom.checkpoint() end
      end)
      hg:start_soon(function()
        loom.wait_all_tasks_blocked()
        add("all blocked")
        ev:set()
      end)
      loom.step()
      assert.are.same({ "busy 1", "busy 2", "busy 3", "all blocked", "event" },
        log)
      assert.are.equal(0, hg:alive())
    end)

  it("allocates nothing per frame in steady state", function()
    local hg = host_group("alloc")
    for _ = 1, 100 do
      hg:start_soon(function() while true do loom.next_frame() end end)
    end
    for _ = 1, 20 do loom.step() end
    collectgarbage("collect")
    collectgarbage("stop")
    local before = collectgarbage("count")
    for _ = 1, 200 do loom.step() end
    local after = collectgarbage("count")
    collectgarbage("restart")
    assert.are.equal(before, after)
  end)
end)

describe("loom.step with a manual clock", function()
  it("allocates nothing per frame with sleeps, channels and locks either",
    function()
      local out = fresh.ok([[
        loom.configure{ clock = "manual" }
        local hg = loom.host_group("mix")
        local send, recv = loom.channel(0)
        local lock = loom.lock()
        for i = 1, 50 do
          hg:start_soon(function()
            while true do loom.sleep(0.01 * (i % 5 + 1)) end
          end)
          hg:start_soon(function()
            while true do send:send(i); loom.next_frame() end
          end)
          hg:start_soon(function() while true do recv:receive() end end)
          hg:start_soon(function()
            while true do
              lock:acquire(); loom.checkpoint(); lock:release()
              loom.next_frame(2)
            end
          end)
        end
        for _ = 1, 50 do loom.step(); loom.advance(1 / 60) end
        collectgarbage("collect")
        collectgarbage("stop")
        local before = collectgarbage("count")
        for _ = 1, 300 do loom.step(); loom.advance(1 / 60) end
        print(collectgarbage("count") - before, hg:alive())
      ]])
      assert.are.equal("0.0\t200\n", out)
    end)

  it("rule 4: deadlines fire in deadline order, equal ones in creation "
    .. "order; a sleep never completes in the step that started it",
    function()
      local out = fresh.ok([[
        loom.configure{clock = "manual"}
        local hg = loom.host_group("timers")
        for _, spec in ipairs({ {"c", 2}, {"a", 1}, {"b", 1}, {"d", 2},
                                {"z", 0} }) do
          hg:start_soon(function()
            loom.sleep(spec[2])
            print(spec[1], loom.now(), loom.frame())
          end)
        end
        loom.step()
        print("advance")
        loom.advance(1)
        loom.step()
        loom.advance(5)
        loom.step()
        print(hg:alive())
      ]])
      assert.are.equal("z\t0.0\t1\nadvance\na\t1.0\t2\nb\t1.0\t2\n"
        .. "c\t6.0\t3\nd\t6.0\t3\n0\n", out)
    end)

  it("rule 6: two runs of the same program give byte-identical transcripts",
    function()
      local program = [[
        loom.configure{clock = "manual"}
        local hg = loom.host_group("npcs")
        local send, recv = loom.channel(2)
        local log = {}
        local function say(s) log[#log + 1] = loom.frame() .. " " .. s end
        for i = 1, 5 do
          hg:start_soon(function()
            for k = 1, 4 do
              loom.sleep(i * 0.02)
              send:send(i * 10 + k)
              say("npc" .. i .. " sent " .. k)
              if k % 2 == 0 then loom.next_frame() else loom.checkpoint() end
            end
          end)
        end
        hg:start_soon(function()
          for _ = 1, 20 do say("got " .. recv:receive()) end
        end)
        for _ = 1, 60 do loom.step(0, 7); loom.advance(1 / 60) end
        print(table.concat(log, "\n"))
        print(hg:alive(), loom.frame())
      ]]
      local a, b = fresh.ok(program), fresh.ok(program)
      assert.are.equal(a, b)
      assert.truthy(a:find("got 54", 1, true))
      assert.truthy(a:find("\n0\t60\n$"), a)
    end)

  it("random programs: same seed, same transcript; nothing left alive",
    function()
      for _, seed in ipairs({ 1, 2, 3 }) do
        local code = ("arg = { %d }\n"):format(seed)
          .. "dofile('spec/embed/fuzz.lua')\n"
        local a, b = fresh.ok(code), fresh.ok(code)
        assert.are.equal(a, b)
        assert.truthy(a:find("\n" .. seed .. "\terrors\t%d+\talive\t0\t"
          .. "frames\t350\n$"), a:sub(-200))
      end
    end)
end)
