-- loom.fs: files with Lua's io methods, and file-system helpers. The C core
-- (fs.c) runs each call as a libuv fs request in the thread pool; this file
-- does what io's C code does around read(2)/write(2): mode handling, read
-- formats, a read buffer and a write buffer, and positions. Regular files
-- are read and written at explicit offsets (the file object keeps its
-- position), so a buffered read-ahead never moves where the next write
-- lands; pipes and character devices are read and written in sequence.

local errors = require("loom.errors")
-- a re-raise keeps the traceback of the first raise
local rethrow = require("loom.core").rethrow
local diagnostics = require("loom.diagnostics")

local M = {}

local CHUNK = 65536        -- read-ahead and write-behind size
local checkpoint           -- loom.checkpoint, set by install
local checkpoint_if_cancelled, cancel_shielded_checkpoint
local core

local ClosedResourceError = errors.ClosedResourceError

local args = require("loom.args")
local argerror, tname = args.argerror, args.tname
local check_path = args.check_string

-- File objects ---------------------------------------------------------------

local File = {}
File.__index = File
File.__name = "loom.File"

function File.__tostring(f)
  if not f.h then return "loom.File: " .. f.path .. " (closed)" end
  return "loom.File: " .. f.path
end

local function check_file(f, fname)
  if getmetatable(f) ~= File then
    args.selferror(fname, "loom.File", type(f), 3)
  end
  if not f.h then
    error(ClosedResourceError(fname .. ": the file is closed"), 3)
  end
end

-- Write out the write buffer (at its offset, or in sequence).
local function flush_writes(f)
  local n = f.wn
  if n == 0 then return end
  local data = n == 1 and f.wbuf[1] or table.concat(f.wbuf, "", 1, n)
  f.wbuf, f.wn, f.wlen = {}, 0, 0
  local h, off = f.h, f.wpos
  local i = 1
  while i <= #data do
    local piece = i == 1 and data or data:sub(i)
    local ok, w = pcall(h.write, h, piece, off)
    if not ok then
      -- Some files stat as regular but refuse offsets (procfs): go on in
      -- sequence.
      if off < 0 or not errors.is(w, errors.OSError) or w.code ~= "ESPIPE"
      then
        rethrow(w)
      end
      f.seekable, f.pos, off = false, -1, -1
      w = h:write(piece, off)
    end
    i = i + w
    if off >= 0 then off = off + w end
  end
  if f.append then f.pos = -2 end   -- unknown: at the end of the file
end

-- Where the next read or write goes; after an append, the end of file.
local function position(f)
  if f.pos == -2 then
    f.pos = f.h:stat().size
  end
  return f.pos
end

-- Drop the read-ahead (before a write or a seek); the logical position
-- stays where the reader left it.
local function drop_reads(f)
  if f.ri <= #f.rb then
    f.rb, f.ri = "", 1
  end
end

-- Make at least `need` unread bytes available (or fewer at end of file).
-- Returns false at end of file with nothing buffered.
local function fill(f, need)
  flush_writes(f)
  while #f.rb - f.ri + 1 < need and not f.eof do
    local want = need - (#f.rb - f.ri + 1)
    if want < CHUNK then want = CHUNK end
    local off = -1
    if f.seekable then off = position(f) + (#f.rb - f.ri + 1) end
    f.did_io = true
    -- A reader going through the file in sequence gets the next chunk read
    -- ahead (fs.c) while it handles this one.
    local seq = off >= 0 and off == f.next_off
    f.next_off = off >= 0 and off + want or false
    local ok, s = pcall(f.h.read, f.h, want, off, seq)
    if not ok then
      if off < 0 or not errors.is(s, errors.OSError) or s.code ~= "ESPIPE"
      then
        rethrow(s)
      end
      f.seekable, f.pos = false, -1
      s = f.h:read(want, -1)
    end
    if s == "" then
      f.eof = true
    else
      if f.ri > #f.rb then
        f.rb, f.ri = s, 1
      elseif f.ri > 1 then
        f.rb, f.ri = f.rb:sub(f.ri) .. s, 1
      else
        f.rb = f.rb .. s
      end
    end
  end
  return #f.rb >= f.ri
end

-- Take n buffered bytes.
local function take(f, n)
  local rb, s = f.rb
  if f.ri == 1 and n >= #rb then
    s = rb                          -- the whole buffer: no copy
  else
    s = rb:sub(f.ri, f.ri + n - 1)
  end
  f.ri = f.ri + #s
  if f.pos >= 0 then f.pos = f.pos + #s end
  return s
end

local function read_line(f, keep)
  local from = f.ri
  while true do
    local i = f.rb:find("\n", from, true)
    if i then
      local s = f.rb:sub(f.ri, keep and i or i - 1)
      if f.pos >= 0 then f.pos = f.pos + (i - f.ri + 1) end
      f.ri = i + 1
      return s
    end
    if f.eof then
      if f.ri > #f.rb then return nil end
      return take(f, #f.rb - f.ri + 1)
    end
    local scanned = #f.rb - f.ri + 1
    fill(f, scanned + 1)
    from = f.ri + scanned
  end
end

local function read_all(f)
  local parts = {}
  while true do
    if #f.rb >= f.ri then parts[#parts + 1] = take(f, #f.rb - f.ri + 1) end
    if f.eof or not fill(f, CHUNK) then break end
  end
  return table.concat(parts)
end

-- Lua's numeral reader: skip space, take at most 200 numeral characters.
local function read_number(f)
  local s = ""
  while true do
    if not fill(f, 1) then return nil end
    local sp = f.rb:match("^%s*", f.ri)
    f.ri = f.ri + #sp
    if f.pos >= 0 then f.pos = f.pos + #sp end
    if f.ri <= #f.rb then break end
  end
  while #s < 200 do
    if not fill(f, 1) then break end
    local c = f.rb:sub(f.ri, f.ri)
    if not c:find("^[%w%.%+%-]") then break end
    s = s .. take(f, 1)
  end
  return math.tointeger(tonumber(s)) or tonumber(s)
end

local function read_one(f, fmt, n)
  if math.type(fmt) == "float" then fmt = math.tointeger(fmt) or fmt end
  if math.type(fmt) == "integer" then
    if fmt < 0 then argerror(n, "read", "count must not be negative", 4) end
    if fmt == 0 then
      fill(f, 1)
      return #f.rb >= f.ri and "" or nil
    end
    if not fill(f, fmt) then return nil end
    return take(f, fmt)
  end
  if type(fmt) ~= "string" then
    argerror(n, "read", "invalid format", 4)
  end
  local c = fmt:match("^%*?(.)")
  if c == "l" then return read_line(f, false) end
  if c == "L" then return read_line(f, true) end
  if c == "a" then return read_all(f) end
  if c == "n" then return read_number(f) end
  argerror(n, "read", "invalid format", 4)
end

local function do_read(f, fname, ...)
  if not f.readable then
    error(errors.OSError(fname .. ": bad file descriptor (" .. f.path
      .. ")", { code = "EBADF", path = f.path }), 3)
  end
  -- A checkpoint: cancellation is checked before anything is consumed; a
  -- call that the buffer served still yields once (shielded, so what it
  -- took is never lost); one that read from the file yielded already.
  checkpoint_if_cancelled()
  f.did_io = false
  local nf = select("#", ...)
  if nf == 0 then
    local v = read_line(f, false)
    if not f.did_io then cancel_shielded_checkpoint() end
    return v
  end
  if nf == 1 then
    local v = read_one(f, (...), 1)
    if not f.did_io then cancel_shielded_checkpoint() end
    return v
  end
  local out = {}
  for i = 1, nf do
    local v = read_one(f, (select(i, ...)), i)
    out[i] = v
    if v == nil then nf = i break end
  end
  if not f.did_io then cancel_shielded_checkpoint() end
  return table.unpack(out, 1, nf)
end

--- f:read(...) -> one value per format: "l" (default), "L", "a", "n", or
--- a byte count; nil at end of file (and for the formats after it).
function File.read(f, ...)
  check_file(f, "read")
  core.check_in_task("File:read")
  return do_read(f, "read", ...)
end

--- f:lines(...) -> an iterator calling f:read(...) until it returns nil.
function File.lines(f, ...)
  check_file(f, "lines")
  local fmts = table.pack(...)
  for i = 1, fmts.n do
    local v = fmts[i]
    if math.type(v) == nil and (type(v) ~= "string"
        or not v:find("^%*?[lLan]")) then
      argerror(i, "lines", "invalid format")
    end
  end
  return function()
    check_file(f, "lines")
    core.check_in_task("File:lines")
    return do_read(f, "lines", table.unpack(fmts, 1, fmts.n))
  end
end

--- f:write(...) -> f. Strings and numbers, buffered up to 64 KiB.
function File.write(f, ...)
  check_file(f, "write")
  core.check_in_task("File:write")
  if not f.writable then
    error(errors.OSError("write: bad file descriptor (" .. f.path .. ")",
      { code = "EBADF", path = f.path }), 2)
  end
  local n = select("#", ...)
  for i = 1, n do
    local v = select(i, ...)
    if math.type(v) == nil and type(v) ~= "string" then
      argerror(i, "write", "string expected, got " .. tname(v))
    end
  end
  checkpoint()
  for i = 1, n do
    local v = select(i, ...)
    local tv = math.type(v)
    if tv == "integer" then v = ("%d"):format(v)
    elseif tv == "float" then v = ("%.14g"):format(v)
    elseif type(v) ~= "string" then
      argerror(i, "write", "string expected, got " .. tname(v))
    end
    if f.wn == 0 then
      if f.ri <= #f.rb then drop_reads(f) end
      f.rb, f.ri, f.eof = "", 1, false
      f.wpos = (f.append or not f.seekable) and -1 or position(f)
    end
    f.wn = f.wn + 1
    f.wbuf[f.wn] = v
    f.wlen = f.wlen + #v
    if f.pos >= 0 then f.pos = f.pos + #v end
  end
  if f.wlen >= f.wlimit or (f.vbuf == "line" and f.wn > 0
      and f.wbuf[f.wn]:find("\n", 1, true)) then
    flush_writes(f)
  end
  return f
end

local vbuf_modes = { no = true, full = true, line = true }

--- f:setvbuf(mode[, size]) -> true. "no": every write goes out at once;
--- "full": writes collect up to size bytes (64 KiB by default); "line":
--- as "full", and a write holding a newline goes out at once.
function File.setvbuf(f, mode, size)
  check_file(f, "setvbuf")
  if not vbuf_modes[mode] then
    argerror(1, "setvbuf", "invalid option '" .. tostring(mode) .. "'")
  end
  if size ~= nil then
    local n = math.type(size) == "float" and math.tointeger(size) or size
    if math.type(n) ~= "integer" or n < 0 then
      argerror(2, "setvbuf", "size must be a non-negative integer")
    end
    size = n
  end
  f.vbuf = mode
  f.wlimit = mode == "no" and 0 or (size or CHUNK)
  return true
end

--- f:seek([whence[, offset]]) -> the new position from the start.
function File.seek(f, whence, offset)
  check_file(f, "seek")
  core.check_in_task("File:seek")
  if whence == nil then whence = "cur" end
  if whence ~= "set" and whence ~= "cur" and whence ~= "end" then
    argerror(1, "seek", "invalid option '" .. tostring(whence) .. "'")
  end
  if offset == nil then offset = 0 end
  local o = math.type(offset) == "float" and math.tointeger(offset) or offset
  if math.type(o) ~= "integer" then
    argerror(2, "seek", "number has no integer representation")
  end
  if not f.seekable then
    error(errors.OSError("seek: illegal seek (" .. f.path .. ")",
      { code = "ESPIPE", path = f.path }), 2)
  end
  checkpoint()
  flush_writes(f)
  local base
  if whence == "set" then base = 0
  elseif whence == "cur" then base = position(f)
  else base = f.h:stat().size end
  if base + o < 0 then
    error(errors.OSError("seek: invalid argument (" .. f.path .. ")",
      { code = "EINVAL", path = f.path }), 2)
  end
  f.rb, f.ri, f.eof = "", 1, false
  f.pos = base + o
  return f.pos
end

--- f:flush() -> f: the write buffer goes to the operating system.
function File.flush(f)
  check_file(f, "flush")
  core.check_in_task("File:flush")
  checkpoint()
  flush_writes(f)
  return f
end

--- f:stat() -> a stat table (see loom.fs.stat).
function File.stat(f)
  check_file(f, "stat")
  core.check_in_task("File:stat")
  flush_writes(f)
  return f.h:stat()
end

--- f:close(): writes out the buffer and closes the file. Idempotent.
function File.close(f)
  if getmetatable(f) ~= File then
    args.selferror("close", "loom.File", type(f))
  end
  local h = f.h
  if not h then return end
  local ok, err = pcall(flush_writes, f)
  f.h = false
  h:close()
  if not ok then rethrow(err) end
end

File.__close = File.close
-- Strict (a misspelt method raises "did you mean") and registered under its
-- __name like the C classes, so that the docs check finds it. Closing sets
-- f.h to false, not nil: every field an instance reads must exist.
diagnostics.strict(File)
debug.getregistry()["loom.File"] = File

-- Install -------------------------------------------------------------------

--- loom.open_file(path[, mode]) -> a loom.File.
local function open_file(path, mode)
  local h = core.fs_open(path, mode)  -- checks path and mode (fs.c)
  if mode == nil then mode = "r" end
  local m, plus = mode:match("^([rwa])(%+?)b*$")
  local seekable = h:seekable()
  return setmetatable({
    h = h, path = path, mode = mode,
    readable = m == "r" or plus == "+",
    writable = m ~= "r" or plus == "+",
    append = m == "a", seekable = seekable,
    pos = seekable and 0 or -1,   -- -1: not tracked; -2: end of file
    rb = "", ri = 1, eof = false,
    wbuf = {}, wn = 0, wlen = 0, wpos = 0, wlimit = CHUNK, vbuf = "full",
    did_io = false, next_off = false,
  }, File)
end

local function check_opts(v, n, fname, known)
  if v == nil then return {} end
  if type(v) ~= "table" then
    argerror(n, fname, "table expected, got " .. type(v), 3)
  end
  for k in pairs(v) do
    if not known[k] then
      argerror(n, fname, "unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  return v
end

function M.install(loom, c)
  core = c
  checkpoint = loom.checkpoint
  checkpoint_if_cancelled = loom.checkpoint_if_cancelled
  cancel_shielded_checkpoint = loom.cancel_shielded_checkpoint
  local fs = {}
  loom.fs = fs
  loom.open_file = open_file

  -- The path calls only name their parameters (for docs-check): fs.c
  -- checks the arguments, naming the function as the user knows it
  -- ("bad argument #1 to 'stat' (path is empty)").
  --- fs.stat(path) / fs.lstat(path) -> stat table.
  function fs.stat(path) return core.fs_stat(path) end
  function fs.lstat(path) return core.fs_lstat(path) end

  --- fs.exists(path) -> boolean (false for ENOENT and ENOTDIR).
  function fs.exists(path)
    check_path(path, 1, "exists")
    core.check_in_task("fs.exists")
    local ok, err = pcall(core.fs_stat, path)
    if ok then return true end
    if errors.is(err, errors.OSError) and (err.code == "ENOENT"
        or err.code == "ENOTDIR") then
      return false
    end
    rethrow(err)
  end

  --- fs.read_file(path) -> the whole content.
  function fs.read_file(path)
    check_path(path, 1, "read_file")
    core.check_in_task("fs.read_file")
    local f <close> = open_file(path, "rb")
    return f:read("a")
  end

  --- fs.write_file(path, data): create or truncate, write, close.
  function fs.write_file(path, data)
    check_path(path, 1, "write_file")
    core.check_in_task("fs.write_file")
    if type(data) ~= "string" then
      argerror(2, "write_file", "string expected, got " .. tname(data))
    end
    local f <close> = open_file(path, "wb")
    f:write(data)
  end

  local mkdir_opts = { parents = true, mode = true }

  --- fs.mkdir(path[, {parents=, mode=}]).
  function fs.mkdir(path, opts)
    check_path(path, 1, "mkdir")
    core.check_in_task("fs.mkdir")
    opts = check_opts(opts, 2, "mkdir", mkdir_opts)
    local mode = opts.mode or 511
    if math.type(mode) ~= "integer" then
      argerror(2, "mkdir", "mode must be an integer")
    end
    if not opts.parents then return core.fs_mkdir(path, mode) end
    local ok, err = pcall(core.fs_mkdir, path, mode)
    if ok then return end
    if errors.is(err, errors.OSError) and err.code == "EEXIST" then
      if core.fs_stat(path).type == "directory" then return end
      rethrow(err)
    end
    if not (errors.is(err, errors.OSError) and err.code == "ENOENT") then
      rethrow(err)
    end
    local parent = path:match("^(.*[^/])/+[^/]+/*$")
    if parent == nil then rethrow(err) end
    fs.mkdir(parent, { parents = true, mode = mode })
    local ok2, err2 = pcall(core.fs_mkdir, path, mode)
    if not ok2 and not (errors.is(err2, errors.OSError)
        and err2.code == "EEXIST" and core.fs_stat(path).type == "directory")
    then
      rethrow(err2)
    end
  end

  function fs.rmdir(path) return core.fs_rmdir(path) end
  function fs.unlink(path) return core.fs_unlink(path) end
  function fs.rename(from, to) return core.fs_rename(from, to) end
  function fs.copyfile(from, to) return core.fs_copyfile(from, to) end
  function fs.realpath(path) return core.fs_realpath(path) end

  --- fs.readdir(path) -> iterator of name, type (not "." or "..").
  function fs.readdir(path)
    local list = core.fs_scandir(path)
    local i = 0
    return function()
      i = i + 1
      local e = list[i]
      if e then return e[1], e[2] end
    end
  end

  --- fs.mkdtemp(prefix) -> the new directory: prefix .. 6 random chars.
  function fs.mkdtemp(prefix) return core.fs_mkdtemp(prefix) end
end

return M
