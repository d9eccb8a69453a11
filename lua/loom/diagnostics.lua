-- loom.diagnostics: what makes loom's errors readable. The names each class
-- has (methods and fields), the "has no method 'x' (did you mean 'y'?)"
-- error for a misspelt member, a short rendering of table errors that have
-- no __tostring, and tracebacks without loom's own frames. Nothing here
-- runs on a hot path: only when an error is being built or printed.

local M = {}

-- Fields of the C classes, which their __index functions compute (they
-- cannot be listed by walking a table). A class defined elsewhere can list
-- its fields in its metatable as __fields = { "name", ... }.
M.fields = {
  ["loom.Task"] = { "name", "id" },
  ["loom.TaskGroup"] = { "cancel_scope" },
  ["loom.CancelScope"] = { "deadline", "shield", "cancel_called",
                           "cancelled_caught", "active" },
  ["loom.Semaphore"] = { "value", "max_value" },
  ["loom.CapacityLimiter"] = { "total_tokens", "borrowed_tokens",
                               "available_tokens" },
  ["loom.BufferedStream"] = { "stream", "buffer" },
}

--- M.members(mt) -> methods, fields: sets of the names an object with
--- metatable mt answers. Methods come from __index when it is a table, or
--- from the tables a C __index function keeps as upvalues (skipping
--- metatables, which hold __name); fields from M.fields and mt.__fields.
function M.members(mt)
  local methods, fields = {}, {}
  local function add_methods(t)
    if type(t) ~= "table" or (t ~= mt and rawget(t, "__name") ~= nil) then
      return
    end
    for k, v in pairs(t) do
      if type(k) == "string" and type(v) == "function"
          and k:sub(1, 2) ~= "__" then
        methods[k] = true
      end
    end
  end
  local idx = rawget(mt, "__index")
  if type(idx) == "table" then
    add_methods(idx)
  elseif type(idx) == "function" then
    for i = 1, 255 do
      local name, v = debug.getupvalue(idx, i)
      if name == nil then break end
      add_methods(v)
    end
  end
  local list = M.fields[rawget(mt, "__name")]
  for _, f in ipairs(list or {}) do fields[f] = true end
  local extra = rawget(mt, "__fields")
  if type(extra) == "table" then
    for _, f in ipairs(extra) do fields[f] = true end
  end
  return methods, fields
end

-- Optimal string alignment distance (Levenshtein with transpositions).
local function distance(a, b)
  local la, lb = #a, #b
  local prev2, prev = {}, {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    local ca = a:sub(i, i)
    for j = 1, lb do
      local cb = b:sub(j, j)
      local cost = ca == cb and 0 or 1
      local d = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
      if i > 1 and j > 1 and ca == b:sub(j - 1, j - 1)
          and a:sub(i - 1, i - 1) == cb then
        d = math.min(d, prev2[j - 2] + 1)
      end
      cur[j] = d
    end
    prev2, prev = prev, cur
  end
  return prev[lb]
end
M.distance = distance

--- M.suggest(name, candidates) -> the closest candidate (a set or a list),
--- or nil when none is close: at most 2 edits, fewer than the name's
--- length, or the same name in another case.
function M.suggest(name, candidates)
  local best, best_d
  local list = {}
  for k, v in pairs(candidates) do
    list[#list + 1] = type(k) == "string" and v == true and k or v
  end
  table.sort(list)
  for _, c in ipairs(list) do
    local d = c:lower() == name:lower() and 0 or distance(name, c)
    if d <= 2 and d < #name and (best_d == nil or d < best_d) then
      best, best_d = c, d
    end
  end
  return best
end

--- M.no_member_message(class_name, key, methods, fields) -> the message.
function M.no_member_message(class_name, key, methods, fields)
  local all = {}
  for k in pairs(methods) do all[k] = true end
  for k in pairs(fields) do all[k] = true end
  local guess = M.suggest(key, all)
  if guess then
    return ("%s has no %s '%s' (did you mean '%s'?)"):format(class_name,
      fields[guess] and "field" or "method", key, guess)
  end
  return ("%s has no %s '%s'"):format(class_name,
    next(fields) and "method or field" or "method", key)
end

--- M.no_member(obj, key) -> the message for obj.key (the no_member hook
--- the C classes' __index functions call), or nil for a non-string key.
function M.no_member(obj, key)
  if type(key) ~= "string" then return nil end
  local mt = getmetatable(obj)
  if type(mt) ~= "table" then return nil end
  local methods, fields = M.members(mt)
  return M.no_member_message(tostring(rawget(mt, "__name") or type(obj)),
    key, methods, fields)
end

--- M.strict(mt): when mt.__index is a table of methods, reading a name it
--- lacks raises the no_member message instead of giving nil. The methods
--- table gets a metatable of its own, so found methods cost nothing more.
--- Does nothing when that table already has a metatable.
function M.strict(mt)
  local methods = rawget(mt, "__index")
  if type(methods) ~= "table" or getmetatable(methods) ~= nil then return end
  local name = tostring(rawget(mt, "__name") or "object")
  setmetatable(methods, { __index = function(_, key)
    if type(key) ~= "string" or key:sub(1, 2) == "__" then return nil end
    local m, f = M.members(mt)
    error(M.no_member_message(name, key, m, f), 2)
  end })
end

--- M.install(): every "loom.*" metatable in the registry with a plain
--- table of methods as __index becomes strict. The C classes already are
--- (csrc/class.c gives their methods tables the fallback when it registers
--- them): this only catches a class registered without it.
function M.install()
  for k, mt in pairs(debug.getregistry()) do
    if type(k) == "string" and k:match("^loom%.") and type(mt) == "table" then
      M.strict(mt)
    end
  end
end

--- M.has(obj, key) -> obj[key], or nil when reading it raises (a strict
--- object without that member). For duck-typing checks.
local function index(obj, key) return obj[key] end
function M.has(obj, key)
  local ok, v = pcall(index, obj, key)
  if ok then return v end
  -- Running out of memory is not a missing member: it propagates.
  if v == "not enough memory" then error(v, 0) end
  return nil
end

-- Rendering values --------------------------------------------------------

local function short(v, depth)
  local tv = type(v)
  if tv == "string" then
    if #v > 40 then v = v:sub(1, 37) .. "..." end
    return ("%q"):format(v):gsub("\\\n", "\\n")
  elseif tv == "table" then
    local mt = getmetatable(v)
    if type(mt) == "table" and rawget(mt, "__tostring") then
      local ok, s = pcall(tostring, v)
      if ok and type(s) == "string" then return s end
    end
    if depth > 0 then return "{...}" end
    return M.describe(v, depth + 1)
  end
  return tostring(v)
end

--- M.describe(v[, depth[, omit]]) -> a one-line text for any error value:
--- tostring for strings and values with __tostring; for other tables their
--- fields, briefly: `{code = 42, path = "/tmp"}` (at most 8, sorted by key;
--- nested tables as {...}; the key `omit` left out), prefixed with the
--- metatable's __name if it has one.
local fields_of

function M.describe(v, depth, omit)
  depth = depth or 0
  if type(v) ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if type(mt) == "table" and rawget(mt, "__tostring") then
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then return s end
  end
  return fields_of(v, depth, omit)
end

-- The `{key = value, ...}` rendering of describe, whatever v's metatable.
function fields_of(v, depth, omit)
  local mt = getmetatable(v)
  local keys = {}
  for k in next, v do
    if k ~= omit then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local parts = {}
  for i, k in ipairs(keys) do
    if i > 8 then
      parts[#parts + 1] = ("... (%d more)"):format(#keys - 8)
      break
    end
    local key
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then
      key = k
    else
      key = "[" .. short(k, 1) .. "]"
    end
    parts[#parts + 1] = key .. " = " .. short(rawget(v, k), depth)
  end
  local name = type(mt) == "table" and rawget(mt, "__name")
  local body = "{" .. table.concat(parts, ", ") .. "}"
  if type(name) == "string" then return name .. " " .. body end
  return body
end

-- The metatable loom.run gives a plain table error (one without a
-- metatable) that leaves the root task, so that the interpreter prints its
-- fields and where it was raised instead of "(error object is a table
-- value)".
local rendering = setmetatable({}, { __mode = "k" })
M.plain_error_mt = {
  __tostring = function(e)
    if rendering[e] then return "{...}" end  -- a table that contains itself
    rendering[e] = true
    local ok, text = pcall(fields_of, e, 0, "traceback")
    rendering[e] = nil
    if not ok then text = "{...}" end
    local tb = rawget(e, "traceback")
    if type(tb) == "string" then text = text .. "\n" .. tb end
    return text
  end,
}

-- Tracebacks ----------------------------------------------------------------

--- M.clean_traceback(tb, own_dir) -> tb without the frames of loom's own Lua
--- files (own_dir, "@.../lua/loom/") and without the C frames loom's calls
--- leave around them ("[C]: in ?" at a coroutine's base, the xpcall that
--- runs a body). The first line (the message) is kept as is.
function M.clean_traceback(tb, own_dir)
  if type(tb) ~= "string" or type(own_dir) ~= "string" then return tb end
  local dir = own_dir:gsub("^@", "")
  local head, frames = tb:match("^(.-\nstack traceback:)\n(.*)$")
  if head == nil then
    head, frames = tb:match("^(stack traceback:)\n(.*)$")
  end
  if head == nil then return tb end
  local function own(line)
    local src = line:match("^\t(.-):%d+:") or line:match("^\t(.-): in ")
    if src == nil then return false end
    if src:sub(1, 3) == "..." then
      local tail = src:sub(4)
      local file = tail:match("[^/\\]+$") or tail
      return (dir .. file):sub(-#tail) == tail
    end
    return src:sub(1, #dir) == dir
  end
  local lines = {}
  for line in (frames .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  local out = {}
  for i, line in ipairs(lines) do
    local keep = not own(line)
    if keep and line:match("^\t%[C%]: in ") then
      -- C frames called by loom's Lua code (xpcall, pcall) or at the base
      -- of a task's coroutine.
      local nxt = lines[i + 1]
      if line == "\t[C]: in ?" and (nxt == nil or nxt == "") then
        keep = false
      elseif nxt and own(nxt) and line:match("in function '[x]?pcall'") then
        keep = false
      end
    end
    if keep and line ~= "" then out[#out + 1] = line end
  end
  if #out == 0 then return head end
  return head .. "\n" .. table.concat(out, "\n")
end

return M
