-- tools/docs_check.lua (make docs-check): the reference and the editor
-- stubs cover loom's whole public surface, and the docs stand alone.
--
--   lua5.4 tools/docs_check.lua [ROOT]
--
-- ROOT (default ".") holds docs/api.md, types/*.lua and the markdown files.
-- loom itself is found on LUA_PATH/LUA_CPATH. Fails (exit 1, one line per
-- problem) when:
--   * a public name has no heading in docs/api.md, or a heading names a
--     function, method or class that does not exist;
--   * a public name has no stub in types/*.lua, a stub file does not load,
--     a stub names something that does not exist, or a stub's parameter
--     count differs from the function's (Lua functions) or from its
--     docs/api.md heading (C functions, whose arity Lua cannot see), or a
--     function its docs/api.md entry calls a *Checkpoint* (or says it
--     *Blocks*) has no ---@async;
--   * a markdown file links to a file outside the repository (or to one
--     that does not exist, or to a heading anchor that does not exist);
--   * a Lua example in docs/api.md does not compile.
--
-- The public names are found by walking require("loom"): its functions and
-- values; the error classes among them (tables made by loom.error_class)
-- and their own functions; its submodules (plain tables of functions, such
-- as loom.fs) and their functions; and every class metatable in the Lua
-- registry under a "loom.*" key, whose methods are its __index table (or
-- the tables a C __index function keeps as upvalues) and whose fields are
-- listed in loom.diagnostics (or the metatable's __fields). Metatables
-- under "loom.core.*" are the C core's internal objects, which only loom's
-- Lua front holds (a raw file handle, a TLS engine): they are not public.
--
-- Heading forms in docs/api.md:
--   ### loom.fn(a, b[, c])      a module function
--   ### loom.sub.fn(a)          a function of a submodule (loom.fs.stat)
--   ### loom.name               a module value or an error class
--   ### Class:method(a)         a method (Class: the metatable's __name
--                               without "loom.")
--   ### Class.field             a field; Class.fn(a) a function in a class
-- Stub forms in types/*.lua (LuaLS ---@meta files):
--   function loom.fn(a, b, c) end
--   loom.sub = {}  function loom.sub.fn(a) end   (a submodule)
--   ---@field name type (under ---@class loom: a module value)
--   ---@class loom.Process  local Process = {}  function Process:wait() end
--   ---@field name type (under a ---@class: a field of that class)
--   ---@alias for plain data shapes (option tables, records): not checked

local root = (...) or "."

local loom = require("loom")
local errors = require("loom.errors")
local diagnostics = require("loom.diagnostics")

-- User-facing names of classes whose metatable is named otherwise.
local aliases = { TaskHandle = "Task" }

local problems = {}
local function bad(fmt, ...)
  problems[#problems + 1] = fmt:format(...)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function class_of(name)
  name = name:gsub("^loom%.", "")
  return aliases[name] or name
end

---------------------------------------------------------------------------
-- The public surface.

-- names[key] = { kind = "function"|"value"|"method"|"field"|"class",
--                fn = function or nil }
-- keys: "loom.fn", "loom.Name", "Class:method", "Class.field", "Class"
local names = {}
local classes = {}  -- Class -> { lua = bool, fields_known = bool }

local function add(key, kind, fn)
  names[key] = { kind = kind, fn = fn }
end

-- A submodule: a table without a metatable whose keys are all strings
-- naming functions (loom.fs).
local function is_submodule(v)
  if type(v) ~= "table" or getmetatable(v) ~= nil or next(v) == nil then
    return false
  end
  for k, f in pairs(v) do
    if type(k) ~= "string" or type(f) ~= "function" then return false end
  end
  return true
end

for k, v in pairs(loom) do
  if type(k) == "string" then
    if type(v) == "function" then
      add("loom." .. k, "function", v)
    else
      add("loom." .. k, "value")
    end
    if is_submodule(v) then
      for fk, fv in pairs(v) do
        add("loom." .. k .. "." .. fk, "function", fv)
      end
    end
    if errors.is_class(v) then
      classes[k] = { error_class = true }
      for ck, cv in pairs(v) do
        if type(ck) == "string" and ck:sub(1, 2) ~= "__" then
          if type(cv) == "function" then
            add(k .. ":" .. ck, "method", cv)
          else
            add(k .. "." .. ck, "field")
          end
        end
      end
    end
  end
end

for key, mt in pairs(debug.getregistry()) do
  if type(key) == "string" and key:match("^loom%.")
      and not key:match("^loom%.core%.") and type(mt) == "table"
      and type(rawget(mt, "__name")) == "string" then
    local cname = class_of(rawget(mt, "__name"))
    local methods, fields = diagnostics.members(mt)
    if next(methods) or next(fields) then
      classes[cname] = {
        -- Fields computed by a C __index function cannot be listed unless
        -- loom.diagnostics knows them: then any documented field is taken.
        open_fields = type(rawget(mt, "__index")) == "function",
      }
      for m in pairs(methods) do
        local idx = rawget(mt, "__index")
        local fn
        if type(idx) == "table" then fn = rawget(idx, m) end
        if fn == nil and type(idx) == "function" then
          for i = 1, 255 do
            local n, u = debug.getupvalue(idx, i)
            if n == nil then break end
            if type(u) == "table" and rawget(u, m) then fn = rawget(u, m) end
          end
        end
        add(cname .. ":" .. m, "method", fn)
      end
      for f in pairs(fields) do add(cname .. "." .. f, "field") end
    end
  end
end

---------------------------------------------------------------------------
-- Parameter lists.

-- "a, b[, c]", "fn, ...", "{deadline=, shield=}" -> count, vararg.
local function count_params(list)
  list = list:gsub("%b{}", "opts"):gsub("[%[%]]", "")
  local n, vararg = 0, false
  for p in list:gmatch("[^,]+") do
    p = p:match("^%s*(.-)%s*$")
    if p == "..." then vararg = true
    elseif p ~= "" then n = n + 1 end
  end
  return n, vararg
end

-- The arity of a Lua function (params without self for methods), or nil.
local function lua_arity(fn, is_method)
  if type(fn) ~= "function" then return nil end
  local info = debug.getinfo(fn, "Su")
  if info.what == "C" then return nil end
  local n = info.nparams
  if is_method then n = n - 1 end
  return n, info.isvararg
end

---------------------------------------------------------------------------
-- docs/api.md

local documented = {}   -- key -> { line =, params =, vararg = }
local api = read(root .. "/docs/api.md")
if not api then
  bad("docs/api.md is missing")
  api = ""
end

local blocking = {}     -- key -> true: the entry says *Checkpoint.*
local last_key
local lineno = 0
for line in (api .. "\n"):gmatch("(.-)\n") do
  lineno = lineno + 1
  if last_key and (line:match("^%*Checkpoint[.*]")
      or line:match("^%*Blocks[.*]")) then
    blocking[last_key] = lineno
  end
  if line:match("^#") then last_key = nil end
  local h = line:match("^###%s+(.-)%s*$")
  if h then
    h = h:gsub("`", "")
    local key, params
    local mod, rest = h:match("^loom%.([%a_][%w_]*)(.*)$")
    local sub, subrest = h:match("^loom%.([%a_][%w_]*%.[%a_][%w_]*)(%(.*)$")
    if sub then mod, rest = sub, subrest end
    if mod then
      key = "loom." .. mod
      params = rest:match("^%((.*)%)$")
      if rest ~= "" and not params then key = nil end
    else
      local c, sep, m, r = h:match("^([%a_][%w_]*)([:.])([%a_][%w_]*)(.*)$")
      if c then
        key = class_of(c) .. sep .. m
        params = r:match("^%((.*)%)$")
        if r ~= "" and not params then key = nil end
        if sep == "." and params and names[key] == nil then
          key = class_of(c) .. ":" .. m  -- Class.fn(...): a class function
        end
      end
    end
    if key == nil then
      bad("docs/api.md:%d: heading %q is not `loom.name(args)`, "
        .. "`loom.sub.name(args)`, `Class:method(args)` or `Class.field`",
        lineno, h)
    else
      local n, va
      if params then n, va = count_params(params) end
      if documented[key] then
        bad("docs/api.md:%d: a second entry for %s (the first is at line %d)",
          lineno, key, documented[key].line)
      end
      documented[key] = { line = lineno, params = n, vararg = va }
      last_key = key
      if names[key] == nil then
        local c, sep = key:match("^([%w_]+)([:.])")
        if key:match("^loom%.[%w_]+%.") then c = "loom" end
        local cls = c ~= "loom" and classes[c]
        local ok = sep == "." and cls and (cls.open_fields or cls.error_class)
        if not ok then
          bad("docs/api.md:%d: %s is not a public name of loom", lineno, key)
        end
      end
    end
  end
end

-- Every Lua example of the reference compiles.
do
  local n, start, block = 0, nil, nil
  for line in (api .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if block then
      if line:match("^```") then
        local ok, err = load(table.concat(block, "\n"), "=example", "t")
        if not ok then
          bad("docs/api.md:%d: the example does not compile: %s", start, err)
        end
        block = nil
      else
        block[#block + 1] = line
      end
    elseif line:match("^```lua") then
      block, start = {}, n
    end
  end
end

local function heading_form(key, info)
  if info.kind == "function" or info.kind == "method" then
    return key .. "(...)"
  end
  return key
end

local sorted = {}
for key in pairs(names) do sorted[#sorted + 1] = key end
table.sort(sorted)
for _, key in ipairs(sorted) do
  if not documented[key] then
    bad("docs/api.md: no entry for %s (add a heading `### %s`)", key,
      heading_form(key, names[key]))
  end
end

---------------------------------------------------------------------------
-- types/*.lua

local stubbed = {}
local stub_files = {}
do
  local p = io.popen("ls " .. root .. "/types/*.lua 2>/dev/null")
  for f in p:lines() do stub_files[#stub_files + 1] = f end
  p:close()
end
if #stub_files == 0 then bad("types/: no stub files") end

local function check_arity(where, key, n, vararg, sep)
  local info = names[key]
  if info == nil then return end
  local is_method = sep == ":"

  local want, want_va = lua_arity(info.fn, is_method)
  local source = "the function"
  -- A Lua function taking (...) to tell a missing argument from nil: its
  -- stub names the leading arguments, as its docs/api.md heading does.
  if want ~= nil and want_va and vararg and n > want then want = nil end
  if want == nil then
    local d = documented[key]
    if d == nil or d.params == nil then return end
    want, want_va, source = d.params, d.vararg, "its docs/api.md heading"
  end
  if n ~= want or (not not vararg) ~= (not not want_va) then
    bad("%s: %s has %d parameter%s%s, %s has %d%s", where, key, n,
      n == 1 and "" or "s", vararg and " and ..." or "", source, want,
      want_va and " and ..." or "")
  end
end

for _, file in ipairs(stub_files) do
  local short = file:sub(#root + 2)
  local chunk, err = loadfile(file)
  if not chunk then bad("%s does not load: %s", short, err) end
  local text = read(file) or ""
  if not text:match("^%-%-%-@meta") then
    bad("%s: the first line must be ---@meta", short)
  end
  local current_class      -- the class of the last ---@class line
  local var_class = { loom = "loom" }   -- local table name -> class
  local async = false      -- the annotations above this line have @async
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    local where = short .. ":" .. n
    local cls = line:match("^%-%-%-@class%s+([%w_.]+)")
    if cls then
      current_class = cls == "loom" and "loom" or class_of(cls)
      if current_class ~= "loom" then
        stubbed[current_class] = true
        if names["loom." .. current_class] then
          stubbed["loom." .. current_class] = true
        elseif not classes[current_class] then
          bad("%s: class %s is not a loom class", where, cls)
        end
      end
    end
    if line:match("^%-%-%-@alias") then current_class = nil end
    local field = line:match("^%-%-%-@field%s+([%w_]+)")
    if field and current_class then
      local key = current_class == "loom" and "loom." .. field
        or current_class .. "." .. field
      stubbed[key] = true
      if names[key] == nil then
        local c = classes[current_class]
        local ok = c and (c.error_class or (c.open_fields
          and documented[key]))
        if not ok then
          bad("%s: field %s is not a public name of loom", where, key)
        end
      end
    end
    local var = line:match("^local%s+([%w_]+)%s*=%s*{%s*}")
    if var and current_class then var_class[var] = current_class end
    if not line:match("^%-%-%-") and not line:match("^%s*$")
        and not line:match("^local%s") and not line:match("^function")
        and not line:match("^[%w_.]+%s*=") then
      current_class = nil
    end
    local v, sep, name, params =
      line:match("^function%s+([%w_]+)([.:])([%w_]+)%s*%((.-)%)")
    local sub, sname, sparams =
      line:match("^function%s+loom%.([%w_]+)%.([%w_]+)%s*%((.-)%)")
    if sub then
      local key = "loom." .. sub .. "." .. sname
      stubbed[key] = true
      if blocking[key] and not async then
        bad("%s: %s blocks (docs/api.md:%d says so) but its stub has no "
          .. "---@async", where, key, blocking[key])
      end
      if names[key] == nil then
        bad("%s: %s is not a public name of loom", where, key)
      else
        local np, va = count_params(sparams)
        check_arity(where, key, np, va, ".")
      end
    elseif v then
      local c = var_class[v]
      if c == nil then
        bad("%s: %s is not a table declared after a ---@class line", where, v)
      else
        local key = c == "loom" and "loom." .. name or c .. ":" .. name
        stubbed[key] = true
        if blocking[key] and not async then
          bad("%s: %s blocks (docs/api.md:%d says so) but its stub has no "
            .. "---@async", where, key, blocking[key])
        end
        if names[key] == nil then
          bad("%s: %s is not a public name of loom", where,
            c == "loom" and key or (c .. sep .. name))
        else
          local np, va = count_params(params)
          check_arity(where, key, np, va, sep)
        end
      end
    end
    if line:match("^%-%-%-@async") then
      async = true
    elseif not line:match("^%-%-%-") then
      async = false
    end
    local assigned = line:match("^loom%.([%w_]+)%s*=")
    if assigned then
      local key = "loom." .. assigned
      stubbed[key] = true
      if names[key] == nil then
        bad("%s: %s is not a public name of loom", where, key)
      end
    end
  end
end

for _, key in ipairs(sorted) do
  if not stubbed[key] then
    bad("types/: no stub for %s", key)
  end
end

---------------------------------------------------------------------------
-- Links in markdown files stay inside the repository.

local function normalize(path)
  local parts = {}
  for p in path:gmatch("[^/]+") do
    if p == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif p ~= "." then
      parts[#parts + 1] = p
    end
  end
  return table.concat(parts, "/")
end

-- GitHub's anchors of a markdown file's headings.
local anchor_cache = {}
local function anchors(file)
  if anchor_cache[file] then return anchor_cache[file] end
  local set, seen = {}, {}
  local text = read(root .. "/" .. file) or ""
  local in_code = false
  for line in (text .. "\n"):gmatch("(.-)\n") do
    if line:match("^```") then in_code = not in_code end
    local h = not in_code and line:match("^#+%s+(.-)%s*$")
    if h then
      local slug = h:lower():gsub("[^%w%s_-]", ""):gsub("%s", "-")
      local n = seen[slug]
      seen[slug] = (n or 0) + 1
      set[n and (slug .. "-" .. n) or slug] = true
    end
  end
  anchor_cache[file] = set
  return set
end

local function check_target(where, dir, target, file)
  if target:match("^%a[%w+.-]*://") and not target:match("^file:") then
    return  -- a web address
  end
  if target:match("^mailto:") then return end
  local anchor = target:match("#(.*)$")
  if target:match("^#") then
    if not anchors(file)[anchor] then
      bad("%s: no heading for the anchor %s", where, target)
    end
    return
  end
  if target:match("^file:") or target:sub(1, 1) == "/"
      or target:match("^~") then
    bad("%s: links to %s, outside the repository", where, target)
    return
  end
  local path = target:gsub("#.*$", ""):gsub("%?.*$", "")
  local full = normalize((dir ~= "" and dir .. "/" or "") .. path)
  if full == nil then
    bad("%s: links to %s, outside the repository", where, target)
  elseif not read(root .. "/" .. full) and not os.rename(root .. "/" .. full,
      root .. "/" .. full) then
    bad("%s: links to %s, which does not exist", where, target)
  elseif anchor and full:match("%.md$") and not anchors(full)[anchor] then
    bad("%s: %s has no heading for the anchor #%s", where, full, anchor)
  end
end

do
  local p = io.popen("cd " .. root .. " && find . -name '*.md' -not -path "
    .. "'./.git/*' -not -path './build*' -not -path './dist/*' -not -path "
    .. "'./bench/out/*' | sort")
  for file in p:lines() do
    file = file:gsub("^%./", "")
    local dir = file:match("^(.*)/[^/]*$") or ""
    local text = read(root .. "/" .. file) or ""
    local n = 0
    for line in (text .. "\n"):gmatch("(.-)\n") do
      n = n + 1
      local where = file .. ":" .. n
      for target in line:gmatch("%]%(<?([^%s)>]+)>?[^)]*%)") do
        check_target(where, dir, target, file)
      end
      for target in line:gmatch("^%s*%[[^%]]+%]:%s*(%S+)") do
        check_target(where, dir, target, file)
      end
      for target in line:gmatch("href=\"([^\"]+)\"") do
        check_target(where, dir, target, file)
      end
      -- A path in code that climbs out of the repository.
      for code in line:gmatch("`([^`]+)`") do
        if code:match("^%.%./") and normalize(dir .. "/" .. code) == nil then
          bad("%s: refers to %s, outside the repository", where, code)
        end
      end
    end
  end
  p:close()
end

if #problems > 0 then
  io.stderr:write("docs-check: ", #problems, " problem",
    #problems == 1 and "" or "s", ":\n  ", table.concat(problems, "\n  "),
    "\n")
  os.exit(1)
end
local count = 0
for _ in pairs(names) do count = count + 1 end
print(("docs-check: %d public names documented and stubbed, links stay "
  .. "in the repository"):format(count))
