-- loom.errors: error classes, ErrorGroup (split, subgroup, a readable
-- tostring) and loom.catch. Error classes are tables; an error object is a
-- table whose metatable is its class. Classes know their parent, so
-- errors.is(err, Class) accepts subclasses.

local diagnostics = require("loom.diagnostics")

local M = {}

local unpack = table.unpack
local pack = table.pack

local class_meta = {}

local function instance_tostring(e)
  local cls = getmetatable(e)
  local msg = rawget(e, "message")
  if msg == nil or msg == "" then return cls.__name end
  return cls.__name .. ": " .. tostring(msg)
end

--- Is `v` an error class made by error_class?
local function is_class(v)
  return type(v) == "table" and getmetatable(v) == class_meta
end
M.is_class = is_class

--- errors.is(err, Class): err is an instance of Class or of a subclass.
function M.is(err, cls)
  if not is_class(cls) then
    error("bad argument #2 to 'is' (error class expected, got "
      .. (type(cls) == "table" and "table" or type(cls)) .. ")", 2)
  end
  if type(err) ~= "table" then return false end
  local c = getmetatable(err)
  while is_class(c) do
    if c == cls then return true end
    c = rawget(c, "__parent")
  end
  return false
end
local is = M.is

function class_meta.__call(cls, message, fields, ...)
  local ctor = rawget(cls, "__new")
  if ctor then return ctor(message, fields, ...) end
  if message ~= nil and type(message) ~= "string" then
    message = tostring(message)
  end
  if fields ~= nil and type(fields) ~= "table" then
    error("bad argument #2 to '" .. cls.__name
      .. "' (table of fields expected, got " .. type(fields) .. ")", 2)
  end
  local e = {}
  if fields then for k, v in pairs(fields) do e[k] = v end end
  e.message = message or e.message or rawget(cls, "default_message") or ""
  return setmetatable(e, cls)
end

function class_meta.__tostring(cls)
  return "loom error class " .. cls.__name
end

function class_meta.__index(cls, k)
  local parent = rawget(cls, "__parent")
  if parent then return parent[k] end
  return nil
end

--- errors.error_class(name[, parent]) -> a new class.
function M.error_class(name, parent)
  if type(name) ~= "string" then
    error("bad argument #1 to 'error_class' (string expected, got "
      .. type(name) .. ")", 2)
  end
  if parent ~= nil and not is_class(parent) then
    error("bad argument #2 to 'error_class' (error class expected, got "
      .. type(parent) .. ")", 2)
  end
  local cls = { __name = name, __parent = parent }
  cls.__index = cls
  cls.__tostring = parent and parent.__tostring or instance_tostring
  return setmetatable(cls, class_meta)
end
local error_class = M.error_class

M.Error = error_class("loom.Error")
M.Cancelled = error_class("Cancelled", M.Error)
M.ErrorGroup = error_class("ErrorGroup", M.Error)
M.TimeoutError = error_class("TimeoutError", M.Error)
M.TimeoutError.default_message = "deadline exceeded"
M.TaskFailed = error_class("TaskFailed", M.Error)
M.TaskCancelled = error_class("TaskCancelled", M.TaskFailed)
M.TaskNotFinished = error_class("TaskNotFinished", M.Error)
M.WouldBlock = error_class("WouldBlock", M.Error)
M.EndOfStream = error_class("EndOfStream", M.Error)
M.ClosedResourceError = error_class("ClosedResourceError", M.Error)
M.BrokenResourceError = error_class("BrokenResourceError", M.Error)
M.BusyResourceError = error_class("BusyResourceError", M.Error)
M.OSError = error_class("OSError", M.Error)
M.IncompleteRead = error_class("IncompleteRead", M.EndOfStream)

-- The Cancelled objects cancel scopes issued. Only these count as a
-- cancellation: a hand-made setmetatable({}, loom.Cancelled) is an error.
local issued = setmetatable({}, { __mode = "k" })

function M.is_cancelled(err)
  return type(err) == "table" and getmetatable(err) == M.Cancelled
    and issued[err] == true
end

---------------------------------------------------------------------------
-- ErrorGroup

local ErrorGroup = M.ErrorGroup
ErrorGroup.default_message = "unhandled errors in a task group"

--- ErrorGroup(message, errors[, tracebacks]) builds a group directly.
function ErrorGroup.new(message, errs, tracebacks)
  if type(errs) ~= "table" then
    error("bad argument #2 to 'ErrorGroup' (table of errors expected, got "
      .. type(errs) .. ")", 2)
  end
  if tracebacks ~= nil and type(tracebacks) ~= "table" then
    error("bad argument #3 to 'ErrorGroup' (table of tracebacks expected, "
      .. "got " .. type(tracebacks) .. ")", 2)
  end
  local n = rawget(errs, "n") or #errs
  if math.type(n) ~= "integer" or n < 0 then
    error("bad argument #2 to 'ErrorGroup' (field 'n' must be a "
      .. "non-negative integer)", 2)
  end
  if n == 0 then
    error("bad argument #2 to 'ErrorGroup' (an error group cannot be empty)", 2)
  end
  local list, tbs = {}, {}
  for i = 1, n do
    list[i] = errs[i]
    tbs[i] = tracebacks and tracebacks[i] or false
  end
  return setmetatable({ message = message or ErrorGroup.default_message,
                        errors = list, tracebacks = tbs }, ErrorGroup)
end

-- Calling the class builds a group: ErrorGroup(message, errors).
ErrorGroup.__new = ErrorGroup.new

local function is_group(e)
  return type(e) == "table" and getmetatable(e) == ErrorGroup
end

-- Methods called on something that is not an ErrorGroup: the lauxlib
-- message, blaming the caller.
local function check_self(self, fname)
  if not is_group(self) then
    local t = type(self)
    if t == "table" and getmetatable(self) ~= nil then
      local name = rawget(getmetatable(self), "__name")
      if type(name) == "string" then t = name end
    end
    error(("calling '%s' on bad self (loom.ErrorGroup expected, got %s)")
      :format(fname, t), 3)
  end
end

local function leaf_text(e)
  if type(e) == "string" then return e end
  if type(e) == "table" and type(rawget(e, "message")) == "string" then
    return e.message
  end
  return nil
end

--- Does matcher m (class, predicate or string pattern) match leaf e?
local function matches(m, e)
  if is_class(m) then return is(e, m) end
  local tm = type(m)
  if tm == "function" then return not not m(e) end
  if tm == "string" then
    local s = leaf_text(e)
    return s ~= nil and s:find(m) ~= nil
  end
  error("bad matcher (error class, function or string pattern expected, got "
    .. tm .. ")", 3)
end
M.matches = matches

local function check_matcher(m, fname, level)
  local tm = type(m)
  if not (is_class(m) or tm == "function" or tm == "string") then
    error("bad argument #1 to '" .. fname .. "' (error class, function or "
      .. "string pattern expected, got " .. tm .. ")", level or 3)
  end
end

local function derive(eg, errs, tbs)
  local g = setmetatable({ message = eg.message, errors = errs,
                           tracebacks = tbs }, getmetatable(eg))
  for k, v in pairs(eg) do
    if g[k] == nil then g[k] = v end
  end
  return g
end

local function split(eg, m)
  local ma, mt, ra, rt = {}, {}, {}, {}
  for i, e in ipairs(eg.errors) do
    local tb = eg.tracebacks[i] or false
    if is_group(e) then
      local a, b = split(e, m)
      if a then ma[#ma + 1] = a; mt[#mt + 1] = tb end
      if b then ra[#ra + 1] = b; rt[#rt + 1] = tb end
    elseif matches(m, e) then
      ma[#ma + 1] = e; mt[#mt + 1] = tb
    else
      ra[#ra + 1] = e; rt[#rt + 1] = tb
    end
  end
  return (#ma > 0 and derive(eg, ma, mt) or nil),
         (#ra > 0 and derive(eg, ra, rt) or nil)
end

--- eg:split(matcher) -> match, rest (either nil when empty; nesting kept).
function ErrorGroup:split(m)
  check_self(self, "split")
  check_matcher(m, "split")
  return split(self, m)
end

--- eg:subgroup(matcher) -> the matching part, or nil.
function ErrorGroup:subgroup(m)
  check_self(self, "subgroup")
  check_matcher(m, "subgroup")
  return (split(self, m))
end

--- Every leaf error, depth first.
function ErrorGroup:leaves()
  check_self(self, "leaves")
  local out = {}
  local function walk(g)
    for _, e in ipairs(g.errors) do
      if is_group(e) then walk(e) else out[#out + 1] = e end
    end
  end
  walk(self)
  return out
end

local function indent(s, pad)
  return pad .. s:gsub("\n", "\n" .. pad)
end

-- tostring that never raises: a member whose __tostring fails (or returns
-- a non-string) renders as <error in __tostring: ...>.
local function safe_tostring(e)
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then return s end
  if ok then s = "'__tostring' must return a string" end
  local ok2, msg = pcall(tostring, s)
  return "<error in __tostring: " .. (ok2 and msg or "?") .. ">"
end

-- describe that never raises either: a member whose own __tostring fails
-- renders as safe_tostring does, and so does one whose fields cannot be
-- rendered.
local function safe_describe(e)
  local ok, s = pcall(tostring, e)
  if ok and type(s) == "string" then
    ok, s = pcall(diagnostics.describe, e)
    if ok and type(s) == "string" then return s end
  end
  return safe_tostring(e)
end

local function render(eg, depth)
  local lines = {}
  local n = #eg.errors
  lines[1] = ("ErrorGroup: %s (%d sub-error%s)"):format(
    safe_tostring(eg.message), n, n == 1 and "" or "s")
  for i, e in ipairs(eg.errors) do
    lines[#lines + 1] = ("+-- %d of %d --"):format(i, n)
    local body
    if is_group(e) then
      body = render(e, depth + 1)
    else
      body = safe_describe(e)
      local tb = eg.tracebacks[i]
      if type(tb) == "string" and tb ~= "" then
        -- A string error's traceback already starts with its message.
        if type(e) == "string" and tb:sub(1, #e) == e then
          body = tb
        else
          body = body .. "\n" .. tb
        end
      end
    end
    lines[#lines + 1] = indent(body, "|   ")
  end
  return table.concat(lines, "\n")
end

ErrorGroup.__tostring = function(eg) return render(eg, 0) end

---------------------------------------------------------------------------
-- catch

--- Argument checks of loom.catch; errors blame the caller of loom.catch.
function M.check_catch(handlers, fn)
  if type(handlers) ~= "table" then
    error("bad argument #1 to 'catch' (table of {matcher, handler} expected, "
      .. "got " .. type(handlers) .. ")", 3)
  end
  for i, h in ipairs(handlers) do
    if type(h) ~= "table" or type(h[2]) ~= "function" then
      error(("bad argument #1 to 'catch' (entry %d is not a {matcher, "
        .. "handler} pair)"):format(i), 3)
    end
    check_matcher(h[1], "catch", 4)
  end
  if type(fn) ~= "function" then
    error("bad argument #2 to 'catch' (function expected, got "
      .. type(fn) .. ")", 3)
  end
end

--- errors.catch(msgh, handlers, fn, rethrow, ...): loom.catch after its
--- checks; rethrow re-raises an error keeping its first traceback
--- (core.rethrow).
function M.catch(msgh, handlers, fn, rethrow, ...)
  local r = pack(xpcall(fn, msgh, ...))
  if r[1] then return unpack(r, 2, r.n) end
  local err = r[2]
  local bare = not is_group(err)
  local rest = bare and ErrorGroup.new("", { err }) or err
  local raised = {}
  for _, h in ipairs(handlers) do
    if rest == nil then break end
    local match
    match, rest = split(rest, h[1])
    if match then
      local ok, e = xpcall(h[2], msgh, match)
      if not ok then raised[#raised + 1] = e end
    end
  end
  if #raised == 0 then
    if rest == nil then return end
    if bare then rethrow(err) end
    rethrow(rest)
  end
  if rest == nil and #raised == 1 then rethrow(raised[1]) end
  if rest ~= nil then raised[#raised + 1] = bare and err or rest end
  error(ErrorGroup.new("", raised), 0)
end

---------------------------------------------------------------------------
-- Hooks the C core calls to build error objects.

function M.hooks(core)
  local function task_name(t)
    local ok, name = pcall(function() return t.name end)
    return ok and name or "?"
  end
  local h
  h = {
    Cancelled = M.Cancelled,
    cancelled = function(reason, by_deadline, task, scope_ptr)
      local msg = ("Cancelled via cancel scope %s"):format(
        tostring(scope_ptr):gsub("^userdata: ", ""))
      if task ~= nil then msg = msg .. " by " .. task_name(task) end
      if reason ~= nil then msg = msg .. "; reason: " .. reason end
      local e = setmetatable({ message = msg, reason = reason,
                               deadline = by_deadline or nil }, M.Cancelled)
      issued[e] = true
      return e
    end,
    issued = issued,
    task_failed = function(cause, tb)
      local why = diagnostics.describe(cause):match("^[^\n]*")
      return M.TaskFailed("the task raised an exception: " .. why,
        { cause = cause,
          traceback = diagnostics.clean_traceback(tb, h.own_dir) or nil })
    end,
    task_cancelled = function(cause)
      return M.TaskCancelled("the task was cancelled", { cause = cause })
    end,
    task_not_finished = function()
      return M.TaskNotFinished("the task has not finished yet")
    end,
    new_error = function(cls, msg, code)
      local c = M[cls]
      if not is_class(c) then
        -- A C file names a class that does not exist: a bug in loom.
        error(("loom: internal error: unknown error class '%s' (raising "
          .. "\"%s\")"):format(tostring(cls), tostring(msg)), 0)
      end
      return c(msg, code and { code = code } or nil)
    end,
    root_error = function(err, tb, deadlock, manual_clock)
      local tree = h.deadlock_tree
      h.deadlock_tree = nil
      if deadlock and M.is_cancelled(err) then
        local msg = "loom.run: deadlock: every task was blocked and nothing "
          .. "could wake them (they were cancelled)"
        if manual_clock then
          msg = msg .. " (the clock is manual: deadlines are reached only "
            .. "by loom.advance)"
        end
        if tree then
          msg = msg .. "\nthe tasks when the deadlock was detected:\n" .. tree
        end
        return msg
      end
      tb = diagnostics.clean_traceback(tb, h.own_dir)
      if type(err) == "string" and type(tb) == "string"
          and tb:sub(1, #err) == err and not err:find("\nstack traceback:") then
        -- The task's own call chain: the caller of loom.run only sees
        -- [C]: in function 'loom.run'.
        return tb
      end
      if type(err) == "table" and tb and rawget(err, "traceback") == nil
          and not M.is_cancelled(err) then
        rawset(err, "traceback", tb)
      end
      if type(err) == "table" and getmetatable(err) == nil then
        setmetatable(err, diagnostics.plain_error_mt)
      end
      return err
    end,
    no_member = diagnostics.no_member,
    core = core,
  }
  return h
end

return M
