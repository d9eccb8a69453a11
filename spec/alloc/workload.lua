-- workload.lua: what spec/alloc/host.c runs under a failing allocator. It
-- touches every module of loom: task groups, handles, tg:start, scopes with
-- and without deadlines, shields, sync primitives, channels, TCP on
-- 127.0.0.1, DNS of "localhost", errors (ErrorGroup, catch), gather,
-- context and task_tree, a short process run with its output piped; then,
-- outside loom.run, the host-driven runtime: a host group stepped with
-- loom.step until its tasks finished, a future and next_frame. Returns
-- "done" when it ran to its end; any error propagates (the host accepts only
-- "not enough memory" ones).

local loom = require("loom")

local function groups_and_handles()
  local ok, err = pcall(loom.task_group, function(tg)
    local h = tg:create_task(function(x) loom.sleep(0.0005); return x, 2 end,
      1)
    tg:start_soon(function() loom.sleep_forever() end)
    tg:start_soon(function() error({ code = 1 }) end)
    local a, b = h:result()
    assert(a == 1 and b == 2)
    assert(h:status() == "finished")
  end)
  assert(not ok)
  if loom.is(err, loom.ErrorGroup) then
    local leaves = err:leaves()
    for _, l in ipairs(leaves) do
      -- A child that ran out of memory: the run ends in that error.
      if l == "not enough memory" then error(l, 0) end
    end
    assert(#leaves == 1 and type(leaves[1]) == "table" and
      leaves[1].code == 1, tostring(err))
    local _ = tostring(err)
  else
    error(err, 0)
  end
end

-- A group's 8th spawn gives it metatables of its own (group.c,
-- own_metatables): its later children's handles keep their parent in the
-- group's Task metatable.
local function many_children()
  local ok, err = pcall(loom.task_group, function(tg)
    local me, hs = loom.current_task(), {}
    for i = 1, 10 do hs[i] = tg:start_soon(function(x) return x end, i) end
    for i = 1, 10 do
      assert(hs[i]:result() == i and hs[i]:parent() == me)
    end
  end)
  if ok then return end
  if loom.is(err, loom.ErrorGroup) then
    for _, l in ipairs(err:leaves()) do
      if l == "not enough memory" then error(l, 0) end
    end
  end
  error(err, 0)
end

local function scopes()
  local s = loom.move_on_after(0.001, loom.sleep_forever)
  assert(s.cancelled_caught)
  s = loom.move_on_at(loom.now() - 1, loom.checkpoint)
  assert(s.cancelled_caught)
  local c = loom.cancel_scope()
  c:run(function()
    c:cancel("stop")
    local shield = loom.cancel_scope{ shield = true }
    shield:run(loom.sleep, 0)
    loom.checkpoint()
  end)
  assert(c.cancelled_caught)
  local ok, err = pcall(loom.fail_after, 0.001, loom.sleep, 1)
  assert(not ok)
  if not loom.is(err, loom.TimeoutError) then error(err, 0) end
  assert(loom.fail_after(1, function(x) return x end, 7) == 7)
  assert(loom.current_effective_deadline() == math.huge)
end

local function start_and_sync()
  loom.task_group(function(tg)
    local v = tg:start(function(status, x)
      status:started(x)
      loom.sleep(0.0005)
    end, 5)
    assert(v == 5)
    local ev, lock, sem = loom.event(), loom.lock(), loom.semaphore(1)
    local cond, lim = loom.condition(), loom.capacity_limiter(1)
    local got = 0
    for _ = 1, 3 do
      tg:start_soon(function()
        lock:acquire()
        sem:acquire()
        lim:acquire()
        ev:wait()
        got = got + 1
        lim:release()
        sem:release()
        lock:release()
      end)
    end
    tg:start_soon(function()
      cond:acquire()
      cond:wait_for(function() return got == 3 end)
      cond:release()
    end)
    loom.wait_all_tasks_blocked()
    ev:set()
    while got < 3 do loom.sleep(0) end
    cond:acquire()
    cond:notify_all()
    cond:release()
  end)
end

local function channels()
  local send, recv = loom.channel(1)
  local sum = 0
  loom.task_group(function(tg)
    tg:start_soon(function()
      for i = 1, 5 do send:send(i) end
      send:close()
    end)
    tg:start_soon(function()
      for v in recv do sum = sum + v end
    end)
  end)
  assert(sum == 15)
end

local function tcp_and_dns()
  loom.task_group(function(tg)
    local listener <close> = loom.create_tcp_listener{
      local_host = "127.0.0.1" }
    local _, port = listener:local_address()
    tg:start_soon(function()
      local c <close> = listener:accept()
      local b = loom.buffered(c)
      local line = b:receive_until("\n", 100)
      c:send(line .. "!\n")
      c:send_eof()
    end)
    local c <close> = loom.connect_tcp("127.0.0.1", port)
    c:send("hello\n")
    local b = loom.buffered(c)
    assert(b:receive_until("\n", 100) == "hello!")
    local addrs = loom.getaddrinfo("localhost", 80)
    assert(#addrs >= 1)
  end)
end

local function errors_and_more()
  local r = loom.gather({ function() return 1 end, function() return 2 end })
  assert(r[1] == 1 and r[2] == 2)
  local caught
  loom.catch({ { "boom", function(eg) caught = eg end } }, function()
    loom.task_group(function(tg)
      tg:start_soon(error, "boom")
    end)
  end)
  assert(caught ~= nil)
  loom.context().user = "x"
  local _ = tostring(loom.task_tree())
end

local function processes()
  local r = loom.run_process({ "echo", "hi" })
  assert(r.returncode == 0 and r.stdout == "hi\n", r.stdout)
end

-- Host code driving loom: the errors of the group's tasks are raised by
-- loom.step (on_error = "raise"), so that running out of memory in one of
-- them ends the workload in that error. The group is closed whatever
-- happened (a failing close is retried: memory may come back), so that the
-- same state can run the workload again.
-- (Made before the group exists: creating a closure allocates, and nothing
-- may fail between opening the group and the protected call.)
local function host_body(hg)
  local f, got = loom.future(), nil
  hg:start_soon(function() got = f:wait() end)
  hg:start_soon(function()
    loom.next_frame()
    loom.sleep(0)
    f:set(42)
  end)
  for _ = 1, 100 do
    loom.step()
    if got ~= nil then break end
  end
  assert(got == 42, "the future was not set")
end

local function host_driven()
  local hg = loom.host_group("alloc")
  local ok, err = pcall(host_body, hg)
  local closed, cerr
  for _ = 1, 3 do
    closed, cerr = pcall(hg.close, hg, 1)
    if closed then break end
  end
  if not ok then error(err, 0) end
  if not closed then error(cerr, 0) end
  loom.step()  -- what the close left for the hook
end

-- Only a fresh state can be configured (the transient and single modes run
-- the workload twice in one state).
pcall(loom.configure, { on_error = "raise" })
local r = loom.run(function()
  groups_and_handles()
  many_children()
  scopes()
  start_and_sync()
  channels()
  tcp_and_dns()
  errors_and_more()
  processes()
  return "done"
end)
host_driven()
return r
