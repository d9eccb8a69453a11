-- The task layout: a task's state is a C struct (from slabs, reused), its
-- TaskHandle a small userdata that outlives it. A handle answers the same
-- before and after its task's struct went back to a slab and was reused.
local H = require("helpers")
local loom = require("loom")
local core = require("loom.core")

local run = H.run

describe("task handles outliving their tasks", function()
  it("answer status, result, error, name, id, parent and tostring after "
    .. "the structs were reused by many other tasks", function()
    local ok_h, fail_h, cancel_h, parent_h
    run(function()
      parent_h = loom.current_task()
      pcall(loom.task_group, function(tg)
        fail_h = tg:start_soon(function() error({ code = 7 }) end)
      end)
      loom.task_group(function(tg)
        ok_h = tg:start_soon(function(a, b) return a + b, "two" end, 1, 2)
        ok_h.name = "adder"
        cancel_h = tg:start_soon(loom.sleep_forever)
        loom.wait_all_tasks_blocked()
        cancel_h:cancel()
        loom.sleep(0)
      end)
    end)
    -- Many tasks after them: their structs are taken again.
    run(function()
      for _ = 1, 3 do
        loom.task_group(function(tg)
          for _ = 1, 2000 do tg:start_soon(function() end) end
        end)
      end
    end)
    assert.equal("finished", ok_h:status())
    assert.is_true(ok_h:done())
    local a, b = ok_h:return_value()
    assert.equal(3, a)
    assert.equal("two", b)
    assert.equal("adder", ok_h.name)
    assert.equal(parent_h, ok_h:parent())
    assert.is_number(ok_h.id)
    H.contains(tostring(ok_h), '(finished) "adder"')
    assert.equal("failed", fail_h:status())
    assert.equal(7, fail_h:error().code)
    assert.equal("cancelled", cancel_h:status())
    H.raises(loom.TaskCancelled, function() cancel_h:return_value() end)
    H.contains(tostring(fail_h), "(failed) \"function ")
  end)

  it("keep their identity: current_task() is the handle spawn returned, "
    .. "usable as a table key", function()
    local seen = {}
    run(function()
      loom.task_group(function(tg)
        local hs = {}
        for i = 1, 50 do
          hs[i] = tg:start_soon(function()
            seen[loom.current_task()] = i
          end)
        end
        loom.wait_all_tasks_blocked()
        for i = 1, 50 do assert.equal(i, seen[hs[i]]) end
      end)
    end)
  end)

  it("a handle waited on after its task finished answers at once", function()
    run(function()
      local h
      loom.task_group(function(tg)
        h = tg:start_soon(function() return "v" end)
      end)
      for _ = 1, 1000 do
        loom.task_group(function(tg) tg:start_soon(function() end) end)
      end
      assert.equal("v", h:result())
      h:wait()
    end)
  end)
end)

describe("a burst of spawns", function()
  it("runs functions with their arguments, names set before the first "
    .. "resume included", function()
    local got = 0
    run(function()
      loom.task_group(function(tg)
        local hs = {}
        -- The coroutine pool empties: the functions wait in the handles
        -- until their first resume.
        for i = 1, 600 do
          hs[i] = tg:start_soon(function(a, b) got = got + a + b end, i, 1)
          if i % 2 == 0 then
            hs[i].name = "renamed " .. i
            hs[i].name = "twice " .. i
          end
        end
        assert.equal("twice 8", hs[8].name)
        H.contains(hs[7].name, "function ")
      end)
    end)
    assert.equal(600 * 601 / 2 + 600, got)
  end)

  it("runs a task given more arguments than a record keeps (32,767)",
     function()
    local args = {}
    for i = 1, 40000 do args[i] = i end
    local counts = {}
    run(function()
      loom.task_group(function(tg)
        -- A burst empties the coroutine pool: tasks with few arguments then
        -- wait as records, one given more takes a new coroutine at once.
        local small = 0
        for _ = 1, 300 do
          tg:start_soon(function(a, b) small = small + a + b end, 1, 2)
        end
        local pending = core.stats().pending_records
        assert.is_true(pending >= 1)
        for k = 1, 3 do
          tg:start_soon(function(...)
            counts[k] = select("#", ...) + select(40000, ...)
          end, table.unpack(args))
        end
        assert.equal(pending, core.stats().pending_records)
        tg:start_soon(function(a, b) counts[4] = a + b end, 1, 2)
        assert.equal(pending + 1, core.stats().pending_records)
        loom.sleep(0)
        assert.equal(900, small)
      end)
    end)
    assert.same({ 80000, 80000, 80000, 3 }, counts)
  end)

  it("runs functions without arguments renamed before the first resume",
     function()
    local ran, names = 0, {}
    run(function()
      loom.task_group(function(tg)
        for i = 1, 600 do
          local h = tg:start_soon(function()
            ran = ran + 1
            names[#names + 1] = loom.current_task().name
          end)
          if i % 3 == 0 then h.name = "n" .. i end
        end
      end)
    end)
    assert.equal(600, ran)
    assert.equal("n3", names[3])
    H.contains(names[1], "function ")
  end)

  it("does not keep its task structs once the scheduler is idle", function()
    run(function()
      loom.task_group(function(tg)
        for _ = 1, 20000 do tg:start_soon(loom.sleep, 0) end
      end)
    end)
    assert.is_true(core.layout().pooled_tasks <= 1024 + 64,
      "structs kept: " .. core.layout().pooled_tasks)
  end)

  -- Beyond the first few slabs, slabs are cut from 2 MiB regions: a
  -- burst's regions go back when the scheduler is idle, but one empty
  -- region is kept, and the next burst reuses what is held. (A task takes
  -- its struct when it first runs: 20,000 tasks parked at once hold 20,000.)
  it("takes a burst's structs from regions and gives them back when idle",
     function()
    local during = {}
    for round = 1, 3 do
      local sum = 0
      run(function()
        local go = loom.event()
        loom.task_group(function(tg)
          for i = 1, 20000 do
            tg:start_soon(function() go:wait(); sum = sum + i end)
          end
          loom.wait_all_tasks_blocked()
          during[round] = core.layout().slab_regions
          go:set()
        end)
      end)
      assert.equal(20000 * 20001 / 2, sum)
      assert.is_true(core.layout().slab_regions <= 1,
        "regions kept: " .. core.layout().slab_regions)
      assert.is_true(core.layout().pooled_tasks <= 1024 + 64)
    end
    -- 20,000 structs of 320 bytes: at least 3 regions of 2 MiB.
    assert.is_true(during[1] >= 3, "regions: " .. during[1])
    assert.equal(during[1], during[2])
    assert.equal(during[1], during[3])
  end)

  it("keeps a region's handles answering after its slabs were reused",
     function()
    local hs = {}
    run(function()
      loom.task_group(function(tg)
        for i = 1, 5000 do hs[i] = tg:start_soon(function() return i end) end
      end)
    end)
    run(function()
      loom.task_group(function(tg)
        for _ = 1, 5000 do tg:start_soon(loom.sleep, 0) end
      end)
    end)
    for i = 1, 5000, 499 do
      assert.equal("finished", hs[i]:status())
      assert.equal(i, hs[i]:return_value())
    end
  end)
end)

describe("core.layout()", function()
  it("gives the sizes of the task layout's structs", function()
    local l = core.layout()
    assert.is_true(l.handle <= 40, "handle " .. l.handle)
    assert.is_true(l.task <= 320, "task " .. l.task)  -- five cache lines
    assert.is_true(l.task_ext > 0 and l.task_ext <= 64, "ext " .. l.task_ext)
    assert.is_true(l.cancel_scope > l.scope)        -- only it has a timer
    assert.equal(3, l.handle_user_values)
  end)
end)

describe("a task's extension (hosted groups, waiters, tg:start(), tracebacks)", function()
  it("is made only for the tasks that need one and freed with each", function()
    local during
    run(function()
      local base = core.layout().task_extensions -- the root hosts a group below
      loom.task_group(function(tg)
        local hosted = base + 1                  -- this group's host
        assert.equal(hosted, core.layout().task_extensions)
        for _ = 1, 500 do tg:start_soon(loom.sleep, 0) end
        loom.sleep(0)
        -- 500 plain children: none has one.
        assert.equal(hosted, core.layout().task_extensions)
        local awaited = tg:start_soon(loom.sleep_forever)
        local waiter = tg:start_soon(function() awaited:wait() end)
        local host = tg:start_soon(function()
          loom.task_group(function(inner) inner:start_soon(loom.sleep_forever) end)
        end)
        local started = tg:start(function(task_status)
          task_status:started("up")
          loom.sleep_forever()
        end)
        loom.wait_all_tasks_blocked()
        -- awaited (a waiter), host (a group), started (tg:start()).
        during = core.layout().task_extensions - hosted
        assert.equal("pending", waiter:status())
        assert.equal("up", started)
        tg:cancel()
        assert.is_not_nil(host)
      end)
      -- A failure records its traceback in one; the task's end frees it.
      local eg = select(2, pcall(loom.task_group, function(tg)
        tg:start_soon(function() error("boom") end)
      end))
      assert.is_true(loom.is(eg, loom.ErrorGroup))
      H.contains(eg.tracebacks[1], "stack traceback")
      -- Only the root still holds one (it hosted groups): until it ends.
      assert.equal(base + 1, core.layout().task_extensions)
    end)
    assert.equal(3, during)
    assert.equal(0, core.layout().task_extensions)
  end)
end)

-- A burst of spawns that empties the coroutine pool leaves the later tasks
-- as pending records (the first bytes of a task) until they first run. They
-- must behave exactly like tasks.
describe("tasks spawned in a burst (pending records)", function()
  local POOL = 256 -- LOOM_POOL_MAX: beyond it, a burst spawns records

  it("keep the order of the ready queue with tasks woken in between",
     function()
    local log = {}
    run(function()
      local ev = loom.event()
      loom.task_group(function(tg)
        tg:start_soon(function() ev:wait(); log[#log + 1] = "woken" end)
        loom.wait_all_tasks_blocked()
        for i = 1, POOL + 50 do
          tg:start_soon(function() log[#log + 1] = i end)
        end
        assert.is_true(core.stats().pending_records >= 50)
        ev:set()                 -- queued after the first POOL + 50
        for i = POOL + 51, POOL + 100 do
          tg:start_soon(function() log[#log + 1] = i end)
        end
      end)
      assert.equal(0, core.stats().pending_records)
    end)
    assert.equal(POOL + 101, #log)
    for i = 1, POOL + 50 do assert.equal(i, log[i]) end
    assert.equal("woken", log[POOL + 51])
    for i = POOL + 51, POOL + 100 do assert.equal(i, log[i + 1]) end
  end)

  it("answer status, name, id, cancel, wait and task_tree before they run",
     function()
    run(function()
      local ran, results, tree = {}, {}, nil
      loom.task_group(function(tg)
        local hs = {}
        for i = 1, POOL + 20 do
          hs[i] = tg:start_soon(function(x)
            ran[#ran + 1] = x
            loom.sleep(0)             -- a checkpoint
            return x * 2
          end, i)
        end
        local last, named = hs[POOL + 20], hs[POOL + 19]
        assert.equal(POOL + 20, core.stats().live_tasks - 1) -- (+ the root)
        assert.equal("pending", last:status())
        assert.is_true(last.id > hs[1].id)
        named.name = "worker"        -- before its first run
        tree = loom.task_tree()
        -- Cancelled before it ran: it starts, and its first checkpoint raises.
        hs[POOL + 18]:cancel("stop")
        assert.equal("cancelling", hs[POOL + 18]:status())
        results.cancelled = hs[POOL + 18]
        -- Waited for before it ran: the waiter gets its result.
        tg:start_soon(function() results.waited = last:result() end)
        tg:start_soon(function() results.named = named:result() end)
      end)
      assert.equal(POOL + 20, #ran)
      assert.equal("cancelled", results.cancelled:status())
      H.raises(loom.TaskCancelled, function() results.cancelled:error() end)
      assert.equal((POOL + 20) * 2, results.waited)
      assert.equal((POOL + 19) * 2, results.named)
      local children = tree.root.groups[1].children
      assert.equal(POOL + 20, #children)     -- in the order they were spawned
      assert.equal("not started", children[POOL + 20].waiting)
      assert.is_nil(children[POOL + 20].where)
      assert.equal("worker", children[POOL + 19].name)
    end)
  end)

  it("start under their group's scope: cancelled with it, errors to it",
     function()
    local ok, eg, started = nil, nil, 0
    run(function()
      ok, eg = pcall(loom.task_group, function(tg)
        for i = 1, POOL + 30 do
          tg:start_soon(function()
            started = started + 1
            if i == POOL + 25 then error("pending " .. i) end
            loom.sleep(1)
          end)
        end
      end)
      assert.equal(0, core.stats().pending_records)
    end)
    assert.is_false(ok)
    assert.is_true(loom.is(eg, loom.ErrorGroup))
    assert.equal(1, #eg.errors)
    H.contains(tostring(eg.errors[1]), "pending " .. (POOL + 25))
    assert.equal(POOL + 30, started)   -- every child ran to its checkpoint
  end)

  it("copy the spawner's context and give their chunks back when idle",
     function()
    run(function()
      loom.context().who = "parent"
      local seen = {}
      loom.task_group(function(tg)
        for i = 1, 3000 do
          tg:start_soon(function() seen[i] = loom.context().who end)
        end
        assert.is_true(core.layout().record_chunks >= 1)
      end)
      for i = 1, 3000 do assert.equal("parent", seen[i]) end
    end)
    local L = core.layout()
    -- A record is 48 bytes (its slot is bigger only under ASan, which
    -- poisons the rest of a struct's stride).
    assert.equal(48, L.pending_record)
    assert.is_true(L.pending_record <= L.record_slot)
    -- idle: at most ~1,024 free records are kept (16 KiB slabs)
    local per_slab = (16384 - 64) // L.record_slot
    assert.is_true(core.layout().record_chunks <= 1024 // per_slab + 2,
      "chunks kept: " .. core.layout().record_chunks)
  end)
end)

describe("a lock whose owner finished while holding it", function()
  it("stays held by that task even after its struct was reused", function()
    run(function()
      local lock = loom.lock()
      local owner
      loom.task_group(function(tg)
        owner = tg:start_soon(function() lock:acquire() end)
      end)
      -- Tasks after it take its struct again.
      loom.task_group(function(tg)
        for _ = 1, 200 do
          tg:start_soon(function()
            assert.is_true(lock:locked())
            H.raises(loom.WouldBlock, function() lock:acquire_nowait() end)
            H.fails_with("not holding this lock", function()
              lock:release()
            end)
          end)
        end
      end)
      assert.equal(owner, lock:statistics().owner)
      H.contains(tostring(lock), "locked by task " .. owner.id)
    end)
  end)
end)

describe("the anchor table after a burst", function()
  it("keeps its size while the burst's tasks finish and shrinks once the "
    .. "scheduler is idle", function()
    run(function()
      local N = 20000
      loom.task_group(function(tg)
        for _ = 1, N do tg:start_soon(loom.sleep_forever) end
        loom.wait_all_tasks_blocked()
        assert.equal(N + 1, core.stats().live_tasks) -- and the root
        tg:cancel()
      end)
      -- Every task of the burst finished; no rebuild ran meanwhile.
      assert.is_true(core.stats().anchor_slots >= N)
      loom.sleep(0.001) -- the scheduler waits: idle
      local after = core.stats().anchor_slots
      assert.is_true(after < 4096, "shrunk to " .. after)
      assert.is_true(after >= 1) -- the root's slot
      -- The slots still work: tasks spawn and finish as before.
      local hs = {}
      loom.task_group(function(tg)
        for i = 1, 100 do hs[i] = tg:start_soon(function() return i end) end
      end)
      for i = 1, 100 do assert.equal(i, hs[i]:result()) end
    end)
  end)

  -- tg:start_soon holds the anchor table as an upvalue; the rebuild must
  -- give it the new one. Were it left with the old table, a task it spawns
  -- would take a slot number of the new table without filling it, and its
  -- finish would clear that slot under another task (one tg:start() made),
  -- whose handle the collector could then take while it runs. A chunk, run
  -- here and by the second test in a fresh interpreter: loom (the module
  -- it is given) spawns across a rebuild; it returns how many of the
  -- tg:start() tasks ran to their end (50).
  local ACROSS_REBUILD = [[
    local loom = ...
    local ran = 0
    loom.task_group(function(tg)
      -- a group whose closure-made spawns span the rebuild
      for _ = 1, 8 do tg:start_soon(function() end) end
      loom.task_group(function(burst)
        for _ = 1, 20000 do burst:start_soon(loom.sleep_forever) end
        loom.wait_all_tasks_blocked()
        burst:cancel()
      end)
      loom.sleep(0.001) -- idle: the table is rebuilt
      assert(require("loom.core").stats().anchor_slots < 4096)
      local go = loom.event()
      for _ = 1, 50 do
        tg:start_soon(function() go:wait() end)
        tg:start(function(task_status)
          task_status:started()
          go:wait()
          loom.sleep(0.001)
          collectgarbage()
          ran = ran + 1
        end)
      end
      go:set()
      loom.sleep(0)
      collectgarbage()
    end)
    return ran
  ]]

  it("is the one tg:start_soon anchors in after a rebuild", function()
    run(function()
      assert.equal(50, assert(load(ACROSS_REBUILD))(loom))
      assert.equal(1, core.stats().live_tasks)
    end)
  end)

  -- Loading the module again makes another tg:start_soon closure over the
  -- same runtime: the rebuild hands the new table to both (in a fresh
  -- interpreter: the reload would replace this one's modules).
  it("is handed to the tg:start_soon of every loading of the module",
    function()
    local script = ("local across = assert(load(%q))\n"):format(ACROSS_REBUILD)
      .. [[
      local loom1 = require("loom")
      for k in pairs(package.loaded) do
        if k:match("^loom") then package.loaded[k] = nil end
      end
      local loom2 = require("loom")
      assert(loom1 ~= loom2 and loom1.task_group ~= loom2.task_group)
      local ran = 0
      loom2.run(function()
        ran = across(loom1) + across(loom2)
      end)
      print(ran, require("loom.core").stats().live_tasks)
    ]]
    local out, ok = H.sh(("cd %s && LUA_PATH='lua/?.lua;lua/?/init.lua;;' "
      .. "LUA_CPATH=%s %s lua5.4 -e %s"):format(H.q(H.root),
      H.q(H.build .. "/?.so;;"), os.getenv("LOOM_TEST_PREFIX") or "",
      H.q(script)))
    assert.equal("100\t0\n", out)
    assert.is_true(ok)
  end)

  -- A pending record is in no list of the runtime's: the rebuild finds it
  -- in the ready queue. A host group's burst waits there across steps, so a
  -- step's end can shrink the table while thousands of records wait.
  it("gives the records still waiting their new slots", function()
    local hg = loom.host_group("burst")
    local hs, out = {}, {}
    for i = 1, 20000 do
      hs[i] = hg:start_soon(function(x)
        out[x] = 2 * x
        return 3 * x
      end, i)
    end
    assert.is_true(core.stats().pending_records >= 19000)
    local rebuilt_with_records = false
    while hg:alive() > 0 do
      local slots = core.stats().anchor_slots
      loom.step(nil, 1000)
      if core.stats().anchor_slots < slots
          and core.stats().pending_records > 0 then
        rebuilt_with_records = true
      end
    end
    assert.is_true(rebuilt_with_records)
    for i = 1, 20000 do
      assert.equal(2 * i, out[i])
      assert.equal("finished", hs[i]:status())
    end
    assert.is_true(hg:close())
    -- each handle is its own task's: its result is that task's
    run(function()
      for i = 1, 20000 do assert.equal(3 * i, hs[i]:result()) end
    end)
  end)
end)

describe("the coroutines", function()
  it("are anchored by the runtime, not by the tasks' handles, and go back "
    .. "to the pool when their tasks finish", function()
    run(function()
      -- Fill the pool: tasks that finish give their coroutines back.
      loom.task_group(function(tg)
        for _ = 1, 50 do tg:start_soon(loom.sleep, 0) end
      end)
      local pooled = core.stats().pooled_coroutines
      local running = core.stats().task_coroutines -- the root's
      assert.is_true(pooled >= 10)
      local done = 0
      loom.task_group(function(tg)
        for _ = 1, 10 do
          tg:start_soon(function()
            pcall(loom.sleep_forever)
            collectgarbage() -- on its own coroutine, parked or not
            done = done + 1
          end)
        end
        loom.wait_all_tasks_blocked()
        assert.equal(pooled - 10, core.stats().pooled_coroutines)
        assert.equal(running + 10, core.stats().task_coroutines)
        -- Only the runtime holds the coroutines of these parked tasks.
        collectgarbage()
        collectgarbage()
        tg:cancel()
      end)
      assert.equal(10, done)
      assert.equal(pooled, core.stats().pooled_coroutines)
      assert.equal(running, core.stats().task_coroutines)
    end)
  end)

  it("of failed tasks are not pooled; a burst's extra ones are let go",
    function()
    run(function()
      loom.task_group(function(tg)
        for _ = 1, 20 do tg:start_soon(loom.sleep, 0) end
      end)
      local pooled = core.stats().pooled_coroutines
      local running = core.stats().task_coroutines
      for _ = 1, 5 do
        local ok = pcall(loom.task_group, function(tg)
          for _ = 1, 10 do tg:start_soon(function() error("boom") end) end
        end)
        assert.is_false(ok)
      end
      -- 50 coroutines died: none came back
      assert.equal(running, core.stats().task_coroutines)
      assert.is_true(core.stats().pooled_coroutines <= pooled)
      -- A burst of parked tasks: each on a coroutine of its own, anchored
      -- by its handle; the pool keeps 256 of them afterwards.
      local N = 2000
      local go = loom.event()
      local sum = 0
      loom.task_group(function(tg)
        for i = 1, N do
          tg:start_soon(function() go:wait(); sum = sum + i end)
        end
        loom.wait_all_tasks_blocked()
        assert.equal(running + N, core.stats().task_coroutines)
        collectgarbage()
        collectgarbage()
        go:set()
      end)
      assert.equal(N * (N + 1) // 2, sum)
      assert.equal(running, core.stats().task_coroutines)
      -- (the running tasks, the root, may hold homes of the pool)
      local kept = core.stats().pooled_coroutines
      assert.is_true(kept <= 256 and kept >= 256 - running, kept)
      -- The pool works on: tasks take pooled and new coroutines.
      local hs = {}
      loom.task_group(function(tg)
        for i = 1, 300 do
          hs[i] = tg:start_soon(function() loom.sleep(0); return i end)
        end
      end)
      for i = 1, 300 do assert.equal(i, hs[i]:result()) end
      assert.equal(running, core.stats().task_coroutines)
    end)
  end)

  it("run a task named before it starts on its own function, and its "
    .. "handle keeps only the outcome", function()
    run(function()
      local hs = {}
      loom.task_group(function(tg)
        for i = 1, 300 do -- beyond the pool: the later ones are records
          hs[i] = tg:start_soon(function(a) return a * 2 end, i)
          hs[i].name = "t" .. i
        end
      end)
      for i = 1, 300 do
        assert.equal(2 * i, hs[i]:result())
        assert.equal("t" .. i, hs[i].name)
      end
      local none
      loom.task_group(function(tg)
        none = tg:start_soon(function() end)
        none.name = "nothing"
      end)
      assert.same({}, { none:result() })
      assert.equal("finished", none:status())
    end)
  end)
end)
