-- loom: structured concurrency for Lua 5.4 on libuv.
--
-- This file is the facade: it re-exports the C core (loom.core) and adds the
-- parts that run once per call setup — task groups' exit logic, cancel scope
-- `run`, timeouts, gather, catch, task_tree formatting. Everything that runs
-- on every await (spawn, park, wake, cancel delivery) is in C.

local core = require("loom.core")
local errors = require("loom.errors")
local diagnostics = require("loom.diagnostics")

local pack, unpack = table.pack, table.unpack
local msgh = core.msgh
-- Re-raise an error on the way out of a scope or group, keeping the
-- traceback of where it was first raised.
local rethrow = core.rethrow
local is_cancelled = errors.is_cancelled
local ErrorGroup = errors.ErrorGroup

-- Source prefix of loom's own Lua files ("@/.../lua/loom/" on disk,
-- "=loom/" when embedded in libloom): their frames are not where a task
-- waits. (Re-raises keep the first traceback through core.rethrow.)
local own_dir = debug.getinfo(1, "S").source
  :match("^([@=].*[/\\])[^/\\]*$")

local hooks = errors.hooks(core)
hooks.own_dir = own_dir
core.set_hooks(hooks)
-- A task's coroutine belongs to the scheduler: coroutine.resume and
-- coroutine.close refuse it (the task is left intact).
core.guard_coroutines(coroutine)

local loom = {
  _VERSION = "loom " .. core.version,
  version = core.version,
}

-- Errors -------------------------------------------------------------------

for _, name in ipairs({ "Cancelled", "ErrorGroup", "TimeoutError",
    "TaskFailed", "TaskCancelled", "TaskNotFinished", "WouldBlock",
    "EndOfStream", "ClosedResourceError", "BrokenResourceError",
    "BusyResourceError", "OSError", "IncompleteRead" }) do
  loom[name] = errors[name]
end
loom.Error = errors.Error
loom.error_class = errors.error_class
loom.is = errors.is
loom.is_cancelled = is_cancelled

--- loom.catch(handlers, fn, ...): handlers = { {matcher, handler}, ... }.
function loom.catch(handlers, fn, ...)
  errors.check_catch(handlers, fn)
  return errors.catch(msgh, handlers, fn, rethrow, ...)
end

-- Running and time -----------------------------------------------------------

loom.run = core.run
loom.now = core.now
loom.sleep = core.sleep
loom.sleep_until = core.sleep_until
loom.sleep_forever = core.sleep_forever
loom.checkpoint = core.checkpoint
loom.checkpoint_if_cancelled = core.checkpoint_if_cancelled
loom.cancel_shielded_checkpoint = core.cancel_shielded_checkpoint
loom.current_effective_deadline = core.effective_deadline
loom.wait_all_tasks_blocked = core.wait_all_tasks_blocked
loom.current_task = core.current_task
loom.context = core.context

local args = require("loom.args")
local callable = args.callable

local function check_fn(v, n, fname)
  if not callable(v) then
    error(("bad argument #%d to '%s' (function expected, got %s)")
      :format(n, fname, type(v)), 3)
  end
end

local function check_delay(v, n, fname, level)
  level = level or 3
  if type(v) ~= "number" then
    error(("bad argument #%d to '%s' (number expected, got %s)")
      :format(n, fname, v == nil and "no value" or type(v)), level)
  end
  if v ~= v then
    error(("bad argument #%d to '%s' (delay is NaN)"):format(n, fname), level)
  end
end

-- Cancel scopes ------------------------------------------------------------

local scope_methods = core.scope_methods
local scope_run = core.scope_run
local scope_set_caught = core.scope_set_caught

--- After core.scope_run left `scope` (catches, ok, results... | error):
--- decide whether the scope swallows a Cancelled (or the Cancelled leaves
--- of a group). Runs after the scope was left, so nothing here can corrupt
--- the scope tree, even when it fails.
local function finish_scope(scope, catches, ok, ...)
  if ok then return ... end
  local e = ...
  if catches then
    if is_cancelled(e) then
      scope_set_caught(scope)
      return
    end
    if errors.is(e, ErrorGroup) then
      local cancelled, rest = e:split(errors.Cancelled)
      if rest == nil then
        scope_set_caught(scope)
        return
      end
      if cancelled ~= nil then e = rest end
    end
  end
  rethrow(e)
end

--- scope:run(fn, ...) -> fn's results (nothing if the scope caught a
--- cancellation). fn is called as fn(...), like pcall.
function scope_methods.run(scope, fn, ...)
  if not core.is_scope(scope) then
    args.selferror("run", "loom.CancelScope", type(scope))
  end
  check_fn(fn, 1, "run")
  return finish_scope(scope, scope_run(scope, fn, ...))
end

--- loom.cancel_scope{deadline=, shield=} -> an unentered CancelScope.
function loom.cancel_scope(opts)
  if opts == nil then return core.scope_new() end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'cancel_scope' (table expected, got "
      .. type(opts) .. ")", 2)
  end
  for k in pairs(opts) do
    if k ~= "deadline" and k ~= "shield" then
      error("bad argument #1 to 'cancel_scope' (unknown option '"
        .. tostring(k) .. "')", 2)
    end
  end
  local d, s = opts.deadline, opts.shield
  if d ~= nil and (type(d) ~= "number" or d ~= d) then
    error("bad argument #1 to 'cancel_scope' (deadline must be a number, "
      .. "got " .. (d ~= d and "NaN" or type(d)) .. ")", 2)
  end
  if s ~= nil and type(s) ~= "boolean" then
    error("bad argument #1 to 'cancel_scope' (shield must be a boolean, got "
      .. type(s) .. ")", 2)
  end
  return core.scope_new(d, s)
end

-- Each public function validates its own arguments, so that argument
-- errors blame the caller's line (level 3: the check, the loom function,
-- its caller). The helpers below run after validation.
local function to_deadline(delay, fname)
  if delay == nil then return nil end
  check_delay(delay, 1, fname, 4)
  if delay < 0 then
    error(("bad argument #1 to '%s' (delay must not be negative)")
      :format(fname), 3)
  end
  return core.now() + delay
end

local function check_deadline(deadline, fname)
  if deadline ~= nil then check_delay(deadline, 1, fname, 4) end
  return deadline
end

local function move_on(deadline, fn, ...)
  local scope = core.scope_new(deadline)
  return scope, scope:run(fn, ...)
end

local function fail(deadline, fn, ...)
  local scope = core.scope_new(deadline)
  local r = pack(scope:run(fn, ...))
  if scope.cancelled_caught and core.now() >= scope.deadline then
    error(errors.TimeoutError(), 0)
  end
  return unpack(r, 1, r.n)
end

function loom.move_on_after(delay, fn, ...)
  local deadline = to_deadline(delay, "move_on_after")
  check_fn(fn, 2, "move_on_after")
  return move_on(deadline, fn, ...)
end

function loom.move_on_at(deadline, fn, ...)
  check_deadline(deadline, "move_on_at")
  check_fn(fn, 2, "move_on_at")
  return move_on(deadline, fn, ...)
end

function loom.fail_after(delay, fn, ...)
  local deadline = to_deadline(delay, "fail_after")
  check_fn(fn, 2, "fail_after")
  return fail(deadline, fn, ...)
end

function loom.fail_at(deadline, fn, ...)
  check_deadline(deadline, "fail_at")
  check_fn(fn, 2, "fail_at")
  return fail(deadline, fn, ...)
end

-- Task groups ----------------------------------------------------------------

local group_run = core.group_run

--- After core.group_run closed the group: raise its ErrorGroup, or let its
--- scope catch its own cancellation, or return the body's results.
local function finish_group(tg, catches, errs, tbs, host_cancelled, ok, ...)
  if errs then
    for i = 1, #errs do
      tbs[i] = diagnostics.clean_traceback(tbs[i], own_dir) or false
    end
    error(ErrorGroup.new(ErrorGroup.default_message, errs, tbs), 0)
  end
  if not ok or host_cancelled then
    if catches then
      scope_set_caught(tg.cancel_scope)
      return
    end
    if not ok then rethrow((...)) end
    core.checkpoint_if_cancelled()
  end
  return ...
end

--- loom.task_group(body) -> body's results, once every child has finished.
function loom.task_group(body)
  check_fn(body, 1, "task_group")
  return finish_group(group_run(body))
end

--- A task_status whose started() does nothing, so that a function written
--- for tg:start() can also be called directly.
loom.TASK_STATUS_IGNORED = setmetatable({}, {
  __index = { started = function() end },
  __tostring = function() return "loom.TASK_STATUS_IGNORED" end,
})

-- Gathering ------------------------------------------------------------------

-- "function <source>:<line>", as a task's default name.
local function describe(f)
  if type(f) ~= "function" then return "callable " .. type(f) end
  local info = debug.getinfo(f, "S")
  if info.what == "C" then return "C function" end
  return ("function %s:%d"):format(info.short_src, info.linedefined)
end

--- The message handler of a gather slot: the error and where it happened.
local function slot_msgh(e)
  local tb = debug.traceback(type(e) == "string" and e or nil, 2)
  return { error = e, traceback = diagnostics.clean_traceback(tb, own_dir) }
end

--- loom.gather(fns[, opts]) -> array of first results in input order, and
--- errors[i] = {error =, traceback =} for each slot that failed (only with
--- return_exceptions; otherwise the first failure raises).
function loom.gather(fns, opts)
  if type(fns) ~= "table" then
    error("bad argument #1 to 'gather' (table of functions expected, got "
      .. type(fns) .. ")", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad argument #2 to 'gather' (table expected, got "
      .. type(opts) .. ")", 2)
  end
  for k, v in pairs(opts or {}) do
    if k ~= "return_exceptions" then
      error("bad argument #2 to 'gather' (unknown option '" .. tostring(k)
        .. "')", 2)
    end
    if type(v) ~= "boolean" then
      error("bad argument #2 to 'gather' (return_exceptions must be a "
        .. "boolean, got " .. type(v) .. ")", 2)
    end
  end
  core.check_in_task("gather")
  local n = #fns
  for i = 1, n do
    if not callable(fns[i]) then
      error(("bad argument #1 to 'gather' (element %d is a %s, not a "
        .. "function)"):format(i, type(fns[i])), 2)
    end
  end
  local results, errs = { n = n }, {}
  local keep = opts and opts.return_exceptions
  loom.task_group(function(tg)
    for i = 1, n do
      local f = fns[i]
      local h
      if keep then
        h = tg:start_soon(function()
          local ok, r = xpcall(f, slot_msgh)
          if ok then
            results[i] = r
          else
            results[i] = r.error
            errs[i] = r
          end
        end)
      else
        h = tg:start_soon(function() results[i] = (f()) end)
      end
      h.name = ("gather[%d] %s"):format(i, describe(f))
    end
  end)
  return results, errs
end

-- Networking (tcp.c, dns.c, net.lua) ----------------------------------------

require("loom.net").install(loom, core)

-- Processes, Unix sockets, stdio, signals, Ctrl-C (process.lua) -------------

require("loom.process").install(loom, core)

-- Worker threads (thread.c, copy.c, thread.lua) -----------------------------

require("loom.thread").install(loom, core, errors)

-- Files, UDP, TLS and fd readiness (fs.c, udp.c, tls.c, poll.c) ---------------

require("loom.io").install(loom, core)

-- Synchronisation (sync.c, channel.c) ---------------------------------------

require("loom.sync")
loom.event = core.event
loom.lock = core.lock
loom.semaphore = core.semaphore
loom.condition = core.condition
loom.capacity_limiter = core.capacity_limiter
loom.channel = core.channel

-- Embedding: host-driven steps, clocks, host groups, futures (embed.lua) ---

require("loom.embed").install(loom, core, errors)

-- Introspection ------------------------------------------------------------

local tree_mt = {}

local function render_task(node, prefix, lines, last, top)
  local line = ("Task %d %q (%s)"):format(node.id, node.name, node.status)
  if node.waiting ~= "running" then
    line = line .. " " .. node.waiting
    if node.where then line = line .. " at " .. node.where end
  else
    line = line .. " running"
  end
  if top then
    lines[#lines + 1] = line
  else
    if node.starting then line = line .. " [starting]" end
    lines[#lines + 1] = prefix .. (last and "└── " or "├── ") .. line
    prefix = prefix .. (last and "    " or "│   ")
  end
  for gi, g in ipairs(node.groups) do
    local glast = gi == #node.groups
    lines[#lines + 1] = prefix .. (glast and "└── " or "├── ")
      .. ("task group (%d task%s%s)"):format(#g.children,
        #g.children == 1 and "" or "s", g.cancelled and ", cancelled" or "")
    local gp = prefix .. (glast and "    " or "│   ")
    for ci, child in ipairs(g.children) do
      render_task(child, gp, lines, ci == #g.children, false)
    end
  end
end

tree_mt.__tostring = function(tree)
  local hgs = tree.host_groups or {}
  if tree.root == nil and #hgs == 0 then return "(no loom run in progress)" end
  local lines = {}
  if tree.root then render_task(tree.root, "", lines, true, true) end
  for _, g in ipairs(hgs) do  -- host groups (embed.lua): roots of their own
    lines[#lines + 1] = ("host group %q (%d task%s%s)"):format(g.name,
      #g.children, #g.children == 1 and "" or "s",
      g.cancelled and ", cancelled" or "")
    for ci, child in ipairs(g.children) do
      render_task(child, "", lines, ci == #g.children, false)
    end
  end
  return table.concat(lines, "\n")
end

--- loom.task_tree() -> a table { root = node } that prints as a tree. Each
--- node: handle, id, name, status, waiting, where ("source:line"), groups =
--- { { children = {node...}, cancelled = bool }, ... }.
function loom.task_tree()
  return setmetatable({ root = core.task_tree(own_dir),
    host_groups = core.host_group_tree(own_dir) }, tree_mt)
end

-- When loom.run finds a deadlock, note the stuck tasks and where each
-- waits: its error lists them once everything has unwound.
function hooks.deadlocked()
  local ok, tree = pcall(loom.task_tree)
  hooks.deadlock_tree = ok and tostring(tree) or nil
  return hooks.deadlock_tree
end

-- A misspelt method or field of a loom object raises at once, naming the
-- class and the closest name, instead of giving nil.
diagnostics.install()

return loom
