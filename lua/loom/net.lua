-- loom.net: the Lua half of networking. The C core (tcp.c, dns.c) does the
-- I/O: numeric-address connects and listeners, receive/send with
-- backpressure, getaddrinfo. This file does what runs once per call setup:
-- argument checks, name resolution and trying each address in turn for
-- connect_tcp, listener:serve, and loom.buffered (receive_exactly /
-- receive_until over any stream with a receive method).

local errors = require("loom.errors")
-- a re-raise keeps the traceback of the first raise
local rethrow = require("loom.core").rethrow
local diagnostics = require("loom.diagnostics")

local M = {}

local OSError = errors.OSError
local is = errors.is
local checkpoint  -- loom.checkpoint, set by install

--- Raised by receive_until when max_bytes pass without the delimiter.
local DelimiterNotFound = errors.error_class("DelimiterNotFound", errors.Error)
M.DelimiterNotFound = DelimiterNotFound

local args = require("loom.args")
local argerror, tname, callable = args.argerror, args.tname, args.callable
local selferror, named_type = args.selferror, args.named_type

local function check_host(v, n, fname)
  if type(v) ~= "string" then
    argerror(n, fname, "string expected, got " .. tname(v), 3)
  end
  if v == "" then argerror(n, fname, "host is empty", 3) end
  if v:find("\0", 1, true) then
    argerror(n, fname, "host contains a NUL", 3)
  end
end

local check_port = args.check_port

-- Buffered streams ---------------------------------------------------------

local Buffered = {}
Buffered.__index = Buffered
Buffered.__name = "loom.BufferedStream"

local function check_buffered(b, fname)
  if getmetatable(b) ~= Buffered then
    selferror(fname, "loom.BufferedStream", named_type(b), 3)
  end
end

function Buffered.__tostring(b)
  check_buffered(b, "__tostring")
  return ("loom.BufferedStream: %d byte%s buffered over %s"):format(
    #b.buffer, #b.buffer == 1 and "" or "s", tostring(b.stream))
end

function Buffered.__close(b)
  check_buffered(b, "__close")
  b:close()
end


local function check_count(v, n, fname, what)
  local c = math.type(v) == "float" and math.tointeger(v) or v
  if math.type(c) ~= "integer" then
    argerror(n, fname, what .. " must be an integer, got "
      .. (type(v) == "number" and tostring(v) or tname(v)), 3)
  end
  return c
end

local function incomplete(e)
  return errors.IncompleteRead(
    "The stream was closed before the read operation could be completed",
    { cause = e })
end

--- b:receive([max_bytes]): buffered bytes first, else one receive from the
--- stream. A checkpoint either way.
function Buffered.receive(b, max_bytes)
  check_buffered(b, "receive")
  if max_bytes == nil then max_bytes = 65536 end
  max_bytes = check_count(max_bytes, 1, "receive", "max_bytes")
  if max_bytes < 1 then
    argerror(1, "receive", "max_bytes must be at least 1")
  end
  local buf = b.buffer
  if #buf > 0 then
    checkpoint()
    buf = b.buffer
    if #buf > 0 then
      b.buffer = buf:sub(max_bytes + 1)
      return buf:sub(1, max_bytes)
    end
  end
  return b.stream:receive(max_bytes)
end

--- b:receive_exactly(n) -> exactly n bytes; raises loom.IncompleteRead (an
--- EndOfStream) if the stream ends first.
function Buffered.receive_exactly(b, n)
  check_buffered(b, "receive_exactly")
  n = check_count(n, 1, "receive_exactly", "nbytes")
  if n < 0 then
    argerror(1, "receive_exactly", "nbytes must not be negative")
  end
  if #b.buffer >= n then checkpoint() end
  while #b.buffer < n do
    local ok, chunk = pcall(b.stream.receive, b.stream, n - #b.buffer)
    if not ok then
      if is(chunk, errors.EndOfStream) then error(incomplete(chunk), 2) end
      rethrow(chunk)
    end
    b.buffer = b.buffer .. chunk
  end
  local buf = b.buffer
  b.buffer = buf:sub(n + 1)
  return buf:sub(1, n)
end

--- b:receive_until(delim, max_bytes) -> the bytes before delim (delim is
--- consumed and dropped). Succeeds iff at most max_bytes bytes precede the
--- delimiter, however the bytes were chunked; raises loom.DelimiterNotFound
--- otherwise, loom.IncompleteRead if the stream ends first.
function Buffered.receive_until(b, delim, max_bytes)
  check_buffered(b, "receive_until")
  if type(delim) ~= "string" then
    argerror(1, "receive_until", "string expected, got " .. tname(delim))
  end
  if delim == "" then argerror(1, "receive_until", "delimiter is empty") end
  max_bytes = check_count(max_bytes, 2, "receive_until", "max_bytes")
  if max_bytes < 1 then
    argerror(2, "receive_until", "max_bytes must be at least 1")
  end
  local offset = 1
  local first = true
  while true do
    local buf = b.buffer
    local i = buf:find(delim, offset, true)
    if i ~= nil and i - 1 <= max_bytes then
      if first then
        checkpoint()
        buf = b.buffer
        i = buf:find(delim, 1, true)
      end
      if i ~= nil then
        b.buffer = buf:sub(i + #delim)
        return buf:sub(1, i - 1)
      end
    end
    -- Deterministic whatever the chunking: fail once the delimiter can no
    -- longer start within max_bytes + 1 bytes.
    if i ~= nil or #buf >= max_bytes + #delim then
      error(DelimiterNotFound(("The delimiter was not found among the first "
        .. "%d bytes"):format(max_bytes), { max_bytes = max_bytes }), 2)
    end
    first = false
    local ok, chunk = pcall(b.stream.receive, b.stream, 65536)
    if not ok then
      if is(chunk, errors.EndOfStream) then error(incomplete(chunk), 2) end
      rethrow(chunk)
    end
    offset = math.max(#buf - #delim + 2, 1)
    b.buffer = buf .. chunk
  end
end

function Buffered.send(b, data)
  check_buffered(b, "send")
  if type(data) ~= "string" then
    argerror(1, "send", "string expected, got " .. tname(data))
  end
  return b.stream:send(data)
end
function Buffered.send_eof(b)
  check_buffered(b, "send_eof")
  return b.stream:send_eof()
end
function Buffered.close(b)
  check_buffered(b, "close")
  return b.stream:close()
end
function Buffered.local_address(b)
  check_buffered(b, "local_address")
  return b.stream:local_address()
end
function Buffered.remote_address(b)
  check_buffered(b, "remote_address")
  return b.stream:remote_address()
end
diagnostics.strict(Buffered)
-- Registered like the C classes' metatables, so that tools walking the
-- registry for "loom.*" classes (the docs check) find it too.
debug.getregistry()["loom.BufferedStream"] = Buffered

-- Listeners ----------------------------------------------------------------

--- Run one connection's handler; its stream is closed when it returns.
local function serve_one(handler, stream)
  local s <close> = stream
  return handler(s)
end

-- Install ------------------------------------------------------------------

--- Add the networking functions to the loom table.
function M.install(loom, core)
  local tcp_connect, tcp_listen = core.tcp_connect, core.tcp_listen
  local ip_family, getaddrinfo = core.ip_family, core.getaddrinfo

  checkpoint = loom.checkpoint
  loom.DelimiterNotFound = DelimiterNotFound
  loom.getaddrinfo = getaddrinfo

  --- loom.connect_tcp(host, port) -> stream. A name is resolved first and
  --- its addresses are tried in turn; the first that connects wins.
  function loom.connect_tcp(host, port)
    check_host(host, 1, "connect_tcp")
    port = check_port(port, 2, "connect_tcp", "port", 1)
    if ip_family(host) then return tcp_connect(host, port) end
    local addrs = getaddrinfo(host, port)
    local errs = {}
    for _, a in ipairs(addrs) do
      local ok, s = pcall(tcp_connect, a.address, port)
      if ok then return s end
      if not is(s, OSError) then rethrow(s) end
      errs[#errs + 1] = s
    end
    if #errs == 1 then rethrow(errs[1]) end
    local msgs = {}
    for i, e in ipairs(errs) do msgs[i] = e.message end
    error(OSError(("connect_tcp: all %d connection attempts to %s:%d "
      .. "failed: %s"):format(#errs, host, port, table.concat(msgs, "; ")),
      { code = errs[#errs] and errs[#errs].code, errors = errs }), 0)
  end

  local listener_opts = { local_host = true, local_port = true,
                          backlog = true }

  --- loom.create_tcp_listener{local_host=, local_port=, backlog=}.
  --- local_host defaults to "0.0.0.0" (every IPv4 interface), local_port to
  --- 0 (the kernel picks one; see listener:local_address()), backlog to
  --- 65536 (the kernel caps it at net.core.somaxconn).
  function loom.create_tcp_listener(opts)
    if opts == nil then opts = {} end
    if type(opts) ~= "table" then
      argerror(1, "create_tcp_listener", "table expected, got " .. type(opts))
    end
    for k in pairs(opts) do
      if not listener_opts[k] then
        argerror(1, "create_tcp_listener", "unknown option '" .. tostring(k)
          .. "'")
      end
    end
    local host = opts.local_host
    if host == nil then host = "0.0.0.0" end
    if type(host) ~= "string" or host == "" or host:find("\0", 1, true) then
      argerror(1, "create_tcp_listener", "local_host must be a non-empty "
        .. "string, got " .. (type(host) == "string" and "''" or type(host)))
    end
    local port = opts.local_port
    if port == nil then port = 0 end
    local p = math.type(port) == "float" and math.tointeger(port) or port
    if math.type(p) ~= "integer" or p < 0 or p > 65535 then
      argerror(1, "create_tcp_listener", "local_port must be an integer in "
        .. "0..65535, got " .. tostring(port))
    end
    local backlog = opts.backlog
    if backlog == nil then backlog = 65536 end
    local b = math.type(backlog) == "float" and math.tointeger(backlog)
      or backlog
    if math.type(b) ~= "integer" or b < 1 or b > 0x7fffffff then
      argerror(1, "create_tcp_listener", "backlog must be a positive "
        .. "integer, got " .. tostring(backlog))
    end
    if not ip_family(host) then
      host = getaddrinfo(host, p)[1].address
    end
    return tcp_listen(host, p, b)
  end

  --- listener:serve(handler[, tg]): accept connections until cancelled and
  --- run handler(stream) for each in its own task, in tg or in a task group
  --- of serve's own. The stream is closed when the handler returns.
  --- M.serve_for(class) -> the serve method of listeners whose metatable
  --- is registered as class ("loom.TCPListener", "loom.UnixListener"):
  --- any listener with accept().
  function M.serve_for(class)
    local listener_mt = debug.getregistry()[class]
    return function(listener, handler, tg)
      if getmetatable(listener) ~= listener_mt then
        selferror("serve", class, named_type(listener), 2)
      end
      if not callable(handler) then
        argerror(1, "serve", "function expected, got " .. tname(handler))
      end
      if tg ~= nil and (type(tg) ~= "userdata" and type(tg) ~= "table"
          or diagnostics.has(tg, "start_soon") == nil) then
        argerror(2, "serve", "task group expected, got " .. type(tg))
      end
      local function loop(group)
        while true do
          local stream = listener:accept()
          local ok, err = pcall(group.start_soon, group, serve_one, handler,
            stream)
          if not ok then
            stream:close()
            rethrow(err)
          end
        end
      end
      if tg ~= nil then return loop(tg) end
      return loom.task_group(loop)
    end
  end
  core.tcp_listener_methods.serve = M.serve_for("loom.TCPListener")

  --- loom.buffered(stream) -> a BufferedStream over any object with
  --- receive(max_bytes); send/send_eof/close/addresses pass through.
  function loom.buffered(stream)
    if stream == nil or (type(stream) ~= "userdata" and type(stream) ~= "table")
        or diagnostics.has(stream, "receive") == nil then
      argerror(1, "buffered", "stream expected, got " .. tname(stream))
    end
    return setmetatable({ stream = stream, buffer = "" }, Buffered)
  end
end

return M
