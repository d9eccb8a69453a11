-- The deadline heap under load, through the public API: thousands of sleeps
-- and scope deadlines with pseudo-random times (many of them equal), some
-- deadlines moved or removed (scope.deadline = ...) and some tasks
-- cancelled, while they wait. Each scenario runs in a fresh process on the
-- autojump clock, so every deadline is reached at once and exactly; the
-- process prints the order in which tasks woke and the order the heap's
-- rules predict: by deadline, equal deadlines in the order they were set.

local fresh = require("embed.fresh")

-- The scenario, run by a fresh lua5.4 with N, SEED and MIX defined first.
-- Task kinds (MIX: kinds 1..5 drawn at random, else 1 only):
--   1 sleep_until(d)
--   2 move_on_at(s, sleep_until, d)           s may be <, = or > d
--   3 a scope {deadline = s} running sleep_until(d); the controller later
--     sets scope.deadline to a new time or to math.huge (none)
--   4 sleep_until(d); the controller cancels the task (TaskHandle:cancel)
--   5 a scope {deadline = s} running sleep_until(d); the controller
--     cancels the scope
-- Every set deadline takes the next number of a counter mirroring the
-- heap's insertion order: a task inserts its scope's deadline, then its
-- sleep, without a checkpoint in between.
local SCENARIO = [[
loom.configure{ clock = "autojump" }
local state = SEED
local function rand(n) -- minstd, 1..n
  state = state * 48271 % 2147483647
  return state % n + 1
end

local seq = 0
local function next_seq() seq = seq + 1; return seq end

local woke = {}      -- "i:outcome" in the order tasks woke
local timers = {}    -- i -> { {when, seq, outcome}, ... } still set
local cancel_order = {}
local started = 0
local base

local function record(i, outcome) woke[#woke + 1] = i .. ":" .. outcome end

local function task(i, kind, d, s)
  local slept = false
  local function body()
    loom.sleep_until(d)
    slept = true
    record(i, "slept")
  end
  if kind == 1 or kind == 4 then
    timers[i] = { { d, next_seq(), "slept" } }
    started = started + 1
    if kind == 1 then return body() end
    local ok, err = pcall(loom.sleep_until, d)
    record(i, ok and "slept" or "cancelled")
    if not ok then error(err, 0) end
    return
  end
  local scope = loom.cancel_scope{ deadline = s }
  timers[i] = { { s, next_seq(), "moved" }, { d, next_seq(), "slept" } }
  timers[i].scope = scope
  started = started + 1
  scope:run(body)
  if not slept then
    assert(scope.cancelled_caught)
    record(i, scope.cancel_called and timers[i].cancelled and "cancelled"
      or "moved")
  end
end

local handles, kinds = {}, {}
loom.run(function()
  base = loom.now() + 100
  loom.task_group(function(tg)
    for i = 1, N do
      local kind = MIX and rand(5) or 1
      local d = base + rand(40) / 8          -- 40 distinct times: many ties
      local s = base + rand(48) / 8          -- around d, sometimes equal
      kinds[i] = kind
      handles[i] = tg:start_soon(task, i, kind, d, s)
    end
    while started < N do loom.sleep(0) end
    -- every task waits now; change the heap under them
    for i = 1, N do
      local k, t = kinds[i], timers[i]
      if k == 3 then
        if rand(4) == 1 then
          t.scope.deadline = math.huge
          t[1] = nil
        else
          local s = base + rand(48) / 8
          t.scope.deadline = s
          t[1] = { s, next_seq(), "moved" }
        end
      elseif k == 4 and rand(2) == 1 then
        handles[i]:cancel()
        t.cancelled = true
        cancel_order[#cancel_order + 1] = i .. ":cancelled"
      elseif k == 5 and rand(2) == 1 then
        t.scope:cancel()
        t.cancelled = true
        cancel_order[#cancel_order + 1] = i .. ":cancelled"
      end
    end
  end)
end)

-- The prediction: cancelled tasks wake first, in the order they were
-- cancelled; every other task at its earliest timer, by (when, seq).
local expect = {}
for _, v in ipairs(cancel_order) do expect[#expect + 1] = v end
local firsts = {}
for i = 1, N do
  local t = timers[i]
  if not t.cancelled then
    local best
    for j = 1, 2 do
      local e = t[j]
      if e and (not best or e[1] < best[1]
          or (e[1] == best[1] and e[2] < best[2])) then
        best = e
      end
    end
    firsts[#firsts + 1] = { best[1], best[2], i .. ":" .. best[3] }
  end
end
table.sort(firsts, function(a, b)
  return a[1] < b[1] or (a[1] == b[1] and a[2] < b[2])
end)
for _, f in ipairs(firsts) do expect[#expect + 1] = f[3] end

print(#woke, #expect)
print(table.concat(woke, " ") == table.concat(expect, " "))
if table.concat(woke, " ") ~= table.concat(expect, " ") then
  for i = 1, math.max(#woke, #expect) do
    if woke[i] ~= expect[i] then
      print("first difference at", i, woke[i], expect[i])
      break
    end
  end
end
print(require("loom.core").stats().deadlines)
]]

local function scenario(n, seed, mix)
  return fresh.ok(string.format("local N, SEED, MIX = %d, %d, %s\n", n, seed,
    tostring(mix)) .. SCENARIO)
end

describe("deadline heap", function()
  it("5,000 sleeps wake by deadline, equal deadlines in sleep order",
    function()
    assert.are.equal("5000\t5000\ntrue\n0\n", scenario(5000, 42, false))
  end)

  it("3,000 sleeps and scope deadlines, moved, removed and cancelled while "
    .. "waiting, wake in the predicted order", function()
    assert.are.equal("3000\t3000\ntrue\n0\n", scenario(3000, 7, true))
  end)

  it("the same on a small heap (checked fully after every change in debug "
    .. "builds)", function()
    for seed = 1, 5 do
      assert.are.equal("200\t200\ntrue\n0\n", scenario(200, seed, true))
    end
  end)

  it("manual clock: deadlines passed by loom.advance fire even when the "
    .. "advancing task then blocks without a checkpoint", function()
    local out = fresh.ok([[
      loom.configure{ clock = "manual" }
      loom.run(function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            loom.sleep(10)
            print("woke at", loom.now())
          end)
          tg:start_soon(function()
            loom.sleep_until(15)
            print("woke at", loom.now())
          end)
          loom.sleep(0)
          loom.advance(20) -- then the group's exit waits for both
        end)
      end)
      print(require("loom.core").stats().deadlines)
    ]])
    assert.are.equal("woke at\t20.0\nwoke at\t20.0\n0\n", out)
  end)
end)
