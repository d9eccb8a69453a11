-- loom.process: the Lua half of child processes, Unix sockets, stdio
-- streams, signal receivers and Ctrl-C. The C core does the work
-- (process.c: uv_spawn, waiting, reaping; pipe.c: Unix sockets and stdio;
-- signal.c: receivers and the SIGINT watcher; stream.c: the streams). This
-- file checks arguments, builds argv/env, runs run_process's concurrent
-- feeding and draining, and wraps loom.run for Ctrl-C and reaping.

local errors = require("loom.errors")
-- a re-raise keeps the traceback of the first raise
local rethrow = require("loom.core").rethrow
local selferror = require("loom.args").selferror

local M = {}

local pack, unpack, concat = table.pack, table.unpack, table.concat
local is = errors.is

--- Raised by run_process with check = true when the command fails.
local CalledProcessError = errors.error_class("CalledProcessError",
  errors.Error)
M.CalledProcessError = CalledProcessError

--- Raised by loom.run after Ctrl-C cancelled the run. Not a loom.Error:
--- like Python's KeyboardInterrupt, `catch(loom.Error, ...)` does not take
--- it. Prints as "interrupted!", the message lua5.4 itself gives.
local Interrupted = errors.error_class("Interrupted")
Interrupted.__tostring = function(e) return e.message end
M.Interrupted = Interrupted

-- Source prefix of loom's own Lua files: "@/.../lua/loom/" on disk,
-- "=loom/" when the front is compiled into libloom.
local own_dir = debug.getinfo(1, "S").source:match("^([@=].*[/\\])[^/\\]*$")

-- The error blames the innermost caller outside loom's own Lua files (the
-- user's line, however deep the wrapper's helpers are); a C caller such as
-- pcall gives no position, as lauxlib's messages do.
local function argerror(n, fname, msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if info == nil or info.what == "C" or own_dir == nil
        or info.source:sub(1, #own_dir) ~= own_dir then
      break
    end
    level = level + 1
  end
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg), level)
end

local function tname(v)
  if v == nil then return "nil" end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then
    return mt.__name
  end
  return type(v)
end

-- Commands and options ----------------------------------------------------

local modes = { pipe = true, inherit = true, null = true }

--- file, argv of a command: a string runs through /bin/sh -c, an array of
--- strings is executed directly.
local function check_cmd(cmd, fname)
  if type(cmd) == "string" then
    if cmd:find("\0", 1, true) then
      argerror(1, fname, "command contains a NUL", 3)
    end
    return "/bin/sh", { "/bin/sh", "-c", cmd }
  end
  if type(cmd) ~= "table" then
    argerror(1, fname, "string or table expected, got " .. tname(cmd), 3)
  end
  local n = #cmd
  if n == 0 then argerror(1, fname, "command is empty", 3) end
  local argv = {}
  for i = 1, n do
    local a = cmd[i]
    if type(a) ~= "string" then
      argerror(1, fname, ("element %d is a %s, not a string")
        :format(i, tname(a)), 3)
    end
    if a:find("\0", 1, true) then
      argerror(1, fname, ("element %d contains a NUL"):format(i), 3)
    end
    argv[i] = a
  end
  if argv[1] == "" then argerror(1, fname, "program name is empty", 3) end
  return argv[1], argv
end

local function check_env(env, fname)
  if env == nil then return false end
  if type(env) ~= "table" then
    argerror(2, fname, "env must be a table, got " .. tname(env), 4)
  end
  local list = {}
  for k, v in pairs(env) do
    if type(k) ~= "string" or k == "" or k:find("[=%z]") then
      argerror(2, fname, "env names must be non-empty strings without '=' "
        .. "(got " .. (type(k) == "string" and ("%q"):format(k) or type(k))
        .. ")", 4)
    end
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" or v:find("\0", 1, true) then
      argerror(2, fname, ("env value of %s must be a string, got %s")
        :format(k, tname(v)), 4)
    end
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

local function check_mode(v, name, fname, default, allow_stdout)
  if v == nil then return default end
  if modes[v] or (allow_stdout and v == "stdout") then return v end
  argerror(2, fname, ("%s must be %s, got %s"):format(name, allow_stdout
    and "'pipe', 'inherit', 'null' or 'stdout'"
    or "'pipe', 'inherit' or 'null'",
    type(v) == "string" and ("'%s'"):format(v) or tname(v)), 4)
end

local run_opts = { input = true, stdin = true, stdout = true, stderr = true,
  check = true, cwd = true, env = true, start_new_session = true }
local open_opts = { stdin = true, stdout = true, stderr = true, cwd = true,
  env = true, start_new_session = true }

local function check_opts(opts, allowed, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    argerror(2, fname, "table expected, got " .. tname(opts), 3)
  end
  for k in pairs(opts) do
    if not allowed[k] then
      argerror(2, fname, "unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  local cwd = opts.cwd
  if cwd ~= nil and (type(cwd) ~= "string" or cwd == ""
      or cwd:find("\0", 1, true)) then
    argerror(2, fname, "cwd must be a non-empty string, got "
      .. (type(cwd) == "string" and "'" .. cwd:gsub("%z", "\\0") .. "'"
        or tname(cwd)), 3)
  end
  for _, k in ipairs({ "check", "start_new_session" }) do
    if opts[k] ~= nil and type(opts[k]) ~= "boolean" then
      argerror(2, fname, k .. " must be a boolean, got " .. tname(opts[k]), 3)
    end
  end
  if opts.input ~= nil and type(opts.input) ~= "string" then
    argerror(2, fname, "input must be a string, got " .. tname(opts.input), 3)
  end
  if opts.input ~= nil and opts.stdin ~= nil then
    argerror(2, fname, "input and stdin cannot both be given", 3)
  end
  return opts
end

local function describe(cmd)
  if type(cmd) == "string" then return "'" .. cmd .. "'" end
  return "'" .. concat(cmd, " ") .. "'"
end

-- Install ------------------------------------------------------------------

function M.install(loom, core)
  local spawn, kill_reap = core.spawn, core.process_kill_reap
  local methods, meta = core.process_methods, core.process_meta
  local EndOfStream = errors.EndOfStream

  loom.CalledProcessError = CalledProcessError
  loom.Interrupted = Interrupted

  local function start(cmd, opts, fname, stdin_default, out_default)
    local file, argv = check_cmd(cmd, fname)
    local env = check_env(opts.env, fname)
    local stdin = opts.input ~= nil and "pipe"
      or check_mode(opts.stdin, "stdin", fname, stdin_default)
    local stdout = check_mode(opts.stdout, "stdout", fname, out_default)
    local stderr = check_mode(opts.stderr, "stderr", fname, out_default, true)
    return spawn(file, argv, env, opts.cwd or false,
      opts.start_new_session or false, stdin, stdout, stderr, cmd, fname)
  end

  local function close_streams(p)
    local a, b, c = p.stdin, p.stdout, p.stderr
    if a then a:close() end
    if b then b:close() end
    if c then c:close() end
  end

  --- p:close(): close the streams, then wait for the child. If the waiting
  --- task is cancelled, the child is killed (SIGKILL) and reaped first.
  function methods.close(p)
    if getmetatable(p) ~= meta then
      selferror("close", "loom.Process", tname(p))
    end
    close_streams(p)
    local ok, e = pcall(p.wait, p)
    if not ok then
      kill_reap(p)
      rethrow(e)
    end
  end

  --- <close>: like close() on a normal exit; when the block is left by an
  --- error (Lua cannot yield there), SIGKILL and reap at once.
  function meta.__close(p, err)
    if err ~= nil then
      close_streams(p)
      kill_reap(p)
      return
    end
    p:close()
  end

  --- loom.open_process(cmd[, opts]) -> Process; stdin, stdout and stderr
  --- are pipes unless opts says otherwise.
  function loom.open_process(cmd, opts)
    opts = check_opts(opts, open_opts, "open_process")
    -- inside a run, so that no child outlives it
    core.check_in_task("open_process")
    return start(cmd, opts, "open_process", "pipe", "pipe")
  end

  local function feed(s, input)
    if #input > 0 then
      local ok, e = pcall(s.send, s, input)
      -- A child that exits without reading all of its input is not an
      -- error of run_process (the exit status tells).
      if not ok and not is(e, errors.BrokenResourceError) then
        s:close()
        rethrow(e)
      end
    end
    s:close()
  end

  local function drain(s, buf)
    local receive = s.receive
    while true do
      local ok, chunk = pcall(receive, s, 65536)
      if not ok then
        if is(chunk, EndOfStream) then return end
        rethrow(chunk)
      end
      buf[#buf + 1] = chunk
    end
  end

  --- loom.run_process(cmd[, opts]) -> {args, returncode, stdout, stderr}.
  function loom.run_process(cmd, opts)
    opts = check_opts(opts, run_opts, "run_process")
    core.check_in_task("run_process")
    local p = start(cmd, opts, "run_process", "inherit", "pipe")
    local out, err = {}, {}
    local input = opts.input
    if p.stdin and input == nil then p.stdin:close() end  -- EOF at once
    local ok, e
    if input == nil and not p.stdout and not p.stderr then
      ok, e = pcall(p.wait, p)   -- nothing to feed or drain
    else
      ok, e = pcall(loom.task_group, function(tg)
        if input ~= nil then tg:start_soon(feed, p.stdin, input) end
        if p.stdout then tg:start_soon(drain, p.stdout, out) end
        if p.stderr then tg:start_soon(drain, p.stderr, err) end
        p:wait()
      end)
    end
    if not ok then
      -- Cancelled or failed: the child does not outlive the call.
      close_streams(p)
      kill_reap(p)
      rethrow(e)
    end
    close_streams(p)
    local rc = p.returncode
    local result = {
      args = cmd, returncode = rc,
      stdout = p.stdout and concat(out) or nil,
      stderr = p.stderr and concat(err) or nil,
    }
    if rc ~= 0 and opts.check ~= false then
      local how
      if rc < 0 then
        how = "died with " .. (core.signal_name(-rc) or ("signal " .. -rc))
      else
        how = "returned non-zero exit status " .. rc
      end
      error(CalledProcessError(("Command %s %s."):format(describe(cmd), how),
        { returncode = rc, cmd = cmd, stdout = result.stdout,
          stderr = result.stderr }), 2)
    end
    return result
  end

  -- Unix sockets ------------------------------------------------------------

  local connect_unix = core.unix_connect
  local create_unix_listener = core.unix_listen

  --- loom.connect_unix(path) -> UnixStream. A path starting with "\0" is a
  --- Linux abstract name. pipe.c checks the path.
  function loom.connect_unix(path)
    while true do
      local s = connect_unix(path)
      if s then return s end
      -- the listener's backlog is full: give it a moment
      loom.sleep(0.005)
    end
  end

  local listener_opts = { path = true, mode = true, backlog = true }

  --- loom.create_unix_listener{path=, mode=, backlog=} -> UnixListener.
  function loom.create_unix_listener(opts)
    if type(opts) ~= "table" then
      argerror(1, "create_unix_listener", "table expected, got "
        .. tname(opts))
    end
    for k in pairs(opts) do
      if not listener_opts[k] then
        argerror(1, "create_unix_listener", "unknown option '"
          .. tostring(k) .. "'")
      end
    end
    if type(opts.path) ~= "string" then
      argerror(1, "create_unix_listener", "path must be a string, got "
        .. tname(opts.path))
    end
    local mode = opts.mode
    if mode ~= nil and (math.type(mode) ~= "integer" or mode < 0
        or mode > 4095) then
      argerror(1, "create_unix_listener", "mode must be an integer in "
        .. "0..4095 (0o7777), got " .. tostring(mode))
    end
    local backlog = opts.backlog
    if backlog == nil then backlog = 65536 end
    if math.type(backlog) ~= "integer" or backlog < 1
        or backlog > 0x7fffffff then
      argerror(1, "create_unix_listener", "backlog must be a positive "
        .. "integer, got " .. tostring(backlog))
    end
    local l = create_unix_listener(opts.path, mode, backlog)
    return l
  end
  core.unix_listener_methods.serve =
    require("loom.net").serve_for("loom.UnixListener")

  -- Stdio -------------------------------------------------------------------

  local stdio = core.stdio
  --- loom.stdin(), loom.stdout(), loom.stderr() -> PipeStream on a
  --- duplicate of fd 0, 1 or 2.
  function loom.stdin() return (stdio(0)) end
  function loom.stdout() return (stdio(1)) end
  function loom.stderr() return (stdio(2)) end

  -- Signals -----------------------------------------------------------------

  local open_signal_receiver = core.signal_receiver
  --- loom.open_signal_receiver(sig, ...) -> SignalReceiver.
  function loom.open_signal_receiver(...)
    local rx = open_signal_receiver(...)
    return rx
  end

  -- loom.run: Ctrl-C and reaping ---------------------------------------------

  local run = core.run
  local arm, disarm = core.sigint_arm, core.sigint_disarm
  local reap_all = core.process_reap_all

  local function interrupted_error(ok, e)
    local list = {}
    if not ok then
      local leaves = is(e, errors.ErrorGroup) and e:leaves() or { e }
      for _, x in ipairs(leaves) do
        if not errors.is_cancelled(x) then list[#list + 1] = x end
      end
    end
    return Interrupted("interrupted!", { errors = list })
  end

  --- loom.run(fn, ...): the core's run, plus Ctrl-C (cancel everything,
  --- then raise loom.Interrupted) and no child left running afterwards.
  --- fn is checked by core.run_entry (C: it tells "no value" from nil).
  local function run_impl(fn, ...)
    local armed = arm()
    local r = pack(pcall(run, fn, ...))
    local interrupted = armed and disarm()
    if not core.stats().running then reap_all() end
    if interrupted then error(interrupted_error(r[1], r[2]), 2) end
    if not r[1] then rethrow(r[2]) end
    return unpack(r, 2, r.n)
  end
  loom.run = core.run_entry(run_impl)
end

return M
