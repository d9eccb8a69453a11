-- spec/leak_check.lua: what spec/setup.lua checks after every test, and the
-- per-test marker H.known_leak (spec/helpers.lua) sets.
--
-- A snapshot holds every number of core.stats() and of every other
-- core.<area>_stats() function (tcp_stats, and whatever areas add later;
-- called without arguments, numbers in nested tables included), plus the
-- registry references alive minus the coroutines kept in the pool.
-- All of them are counts of live objects: after a test none may be higher
-- than before it. Fields that are caches or running totals are listed in
-- NOT_LIVE; an area adding such a field to its stats table adds it there.

local M = {}

local NOT_LIVE = {
  ["stats.pooled_coroutines"] = true,  -- finished coroutines kept for reuse
  ["stats.coroutine_slots"] = true,    -- the threads table's size (shrinks idle)
  ["stats.anchor_slots"] = true,       -- the anchor table's size (shrinks idle)
  ["stats.registry_refs"] = true,      -- compared as REFS below
  ["stats.running"] = true,            -- checked by M.idle_problem
  -- Worker threads are pooled like coroutines: idle ones stay for a while.
  ["thread_stats.workers"] = true,
  ["thread_stats.idle_workers"] = true,
}

-- An area whose stats have a `runtime_handles` field owns that many libuv
-- handles for the runtime's whole life (a pool's async handle): they are
-- taken off core.stats().uv_handles, like the runtime's own timer.

-- Registry references alive (pooled coroutines hold none: the pool is a
-- table).
local REFS = "[registry refs]"

-- How long closes and requests in flight get to land (LOOM_LEAK_SETTLE
-- overrides it, in seconds).
local SETTLE_SECONDS = tonumber(os.getenv("LOOM_LEAK_SETTLE")) or 1.0

--- M.core() -> the loaded loom.core module, or nil.
function M.core()
  return package.loaded["loom.core"]
end

--- M.snapshot(core) -> { ["tcp_stats.streams"] = 0, ... }
function M.snapshot(core)
  local snap, names = {}, {}
  for name, fn in pairs(core) do
    if type(name) == "string" and type(fn) == "function"
        and (name == "stats" or name:match("^[%w_]+_stats$")) then
      names[#names + 1] = name
    end
  end
  table.sort(names)
  local function add(prefix, t, depth)
    for k, v in pairs(t) do
      local key = prefix .. "." .. tostring(k)
      if type(v) == "number" and not NOT_LIVE[key] then
        snap[key] = v
      elseif type(v) == "table" and depth < 2 then
        add(key, v, depth + 1)  -- e.g. counts per kind
      end
    end
  end
  for _, name in ipairs(names) do
    local ok, t = pcall(core[name])
    if not ok then
      error(("leak check: core.%s() raised: %s"):format(name, tostring(t)), 0)
    end
    if type(t) == "table" then add(name, t, 1) end
  end
  local st = core.stats()
  snap[REFS] = st.registry_refs
  for _, name in ipairs(names) do
    local key = name .. ".runtime_handles"
    if snap[key] then
      snap["stats.uv_handles"] = snap["stats.uv_handles"] - snap[key]
      snap[key] = nil
    end
  end
  return snap
end

--- M.grown(before, after, refs) -> list of lines, one per count that is
--- higher after than before; registry refs only when refs is true.
function M.grown(before, after, refs)
  local out = {}
  for key, v in pairs(after) do
    local b = before[key] or 0
    if v > b and (refs or key ~= REFS) then
      local name = key:gsub("^([%w_]+)%.", "core.%1().")
      out[#out + 1] = ("  %s: %s before the test, %s after"):format(name, b,
        v)
    end
  end
  table.sort(out)
  return out
end

--- M.idle_problem(core) -> nil, or why the runtime is not idle.
function M.idle_problem(core)
  local st = core.stats()
  if st.running or st.ready ~= 0 then
    return ("the runtime is not idle (running: %s, ready tasks: %d)"):format(
      tostring(st.running), st.ready)
  end
  return nil
end

-- Run the loop until nothing is up any more (a close waiting for its
-- callback, a cancelled request finishing in libuv's thread pool), for at
-- most `seconds`.
local function settle(core, before, seconds)
  local loom = require("loom")
  local allowed = {}  -- before, plus the task running this loop
  for k, v in pairs(before) do allowed[k] = v end
  allowed["stats.live_tasks"] = (before["stats.live_tasks"] or 0) + 1
  loom.run(function()
    local stop = loom.now() + seconds
    while loom.now() < stop do
      if #M.grown(allowed, M.snapshot(core), false) == 0 then return end
      loom.sleep(0.002)
    end
  end)
end

--- M.leftovers(core, before[, settle_seconds]) -> list of lines (empty:
--- nothing leaked). Lets closes and requests land for up to settle_seconds
--- (default SETTLE_SECONDS) first. The collector is stopped meanwhile: an
--- object the test forgot to close stays open and is reported, not
--- finalised away.
function M.leftovers(core, before, settle_seconds)
  local gc_was_running = collectgarbage("isrunning")
  collectgarbage("stop")
  local ok, left = pcall(function()
    local grown = M.grown(before, M.snapshot(core), false)
    if #grown == 0 then return grown end
    settle(core, before, settle_seconds or SETTLE_SECONDS)
    return M.grown(before, M.snapshot(core), false)
  end)
  if gc_was_running then collectgarbage("restart") end
  if not ok then error(left, 0) end
  if #left > 0 then return left end
  -- References held by garbage (a Cancelled kept by a scope nobody uses)
  -- go with a collection; anything else is anchored for good.
  if #M.grown(before, M.snapshot(core), true) > 0 then
    collectgarbage()
    left = M.grown(before, M.snapshot(core), true)
  end
  return left
end

-- Set by H.known_leak(why) during a test, read and cleared after it.
M.known_leak = nil

return M
