-- loom.tls: TLS streams over any loom stream. The engine (tls.c) is an
-- OpenSSL session between two memory BIOs; this file moves its ciphertext
-- over the underlying stream's send/receive. Full duplex: one task may
-- receive while another sends. Every write of ciphertext to the transport
-- holds the stream's output lock (the receiver also writes: handshake
-- replies, TLS 1.3 key updates), and takes the engine's output while
-- holding it, so bytes reach the transport in the order OpenSSL made them.

local errors = require("loom.errors")
-- a re-raise keeps the traceback of the first raise
local rethrow = require("loom.core").rethrow
local diagnostics = require("loom.diagnostics")

local M = {}

local TLSError = errors.TLSError
if TLSError == nil then
  TLSError = errors.error_class("TLSError", errors.BrokenResourceError)
  errors.TLSError = TLSError   -- so that new_error("TLSError") finds it
end
M.TLSError = TLSError

local is = errors.is
local loom, core   -- set by install

local args = require("loom.args")
local argerror, tname = args.argerror, args.tname

-- Streams -------------------------------------------------------------------

local TLSStream = {}
TLSStream.__index = TLSStream
TLSStream.__name = "loom.TLSStream"

function TLSStream.__tostring(s)
  if s.closed then return "loom.TLSStream: closed" end
  return ("loom.TLSStream: %s over %s"):format(
    s.eng:version(), tostring(s.transport))
end

local function check_stream(s, fname)
  if getmetatable(s) ~= TLSStream then
    args.selferror(fname, "loom.TLSStream", type(s), 3)
  end
  if s.closed then
    error(errors.ClosedResourceError(fname .. ": the stream is closed"), 3)
  end
end

local function busy(action)
  return errors.BusyResourceError(("Another task is already %s this "
    .. "resource"):format(action))
end

-- The output lock: a flag and an event, cheap when nobody contends.
local function out_acquire(s)
  while s.out_busy do
    local ev = s.out_ev
    if not ev then
      ev = loom.event()
      s.out_ev = ev
    end
    ev:wait()
  end
  s.out_busy = true
end

local function out_release(s)
  s.out_busy = false
  local ev = s.out_ev
  if ev then
    s.out_ev = false
    ev:set()
  end
end

local function send_output(s)
  local out = s.eng:take_output()
  if #out > 0 then s.transport:send(out) end
end

-- Send the engine's pending ciphertext (under the lock).
local function flush(s)
  out_acquire(s)
  local ok, err = pcall(send_output, s)
  out_release(s)
  if not ok then
    s.broken = s.broken or not errors.is_cancelled(err)
    rethrow(err)
  end
end

local function fail(s, msg, code)
  s.broken = true
  return TLSError(msg, { code = code })
end

-- One chunk of ciphertext from the transport into the engine; false once
-- the transport ended.
local function pull(s)
  if s.transport_eof then return false end
  local ok, chunk = pcall(s.transport.receive, s.transport, 65536)
  if ok then
    s.eng:feed(chunk)
    return true
  end
  if is(chunk, errors.EndOfStream) then
    s.transport_eof = true
    s.eng:feed_eof()
    return true
  end
  rethrow(chunk)
end

local function handshake(s)
  local eng = s.eng
  while true do
    local done, msg, code = eng:handshake()
    if eng:has_output() then
      if done == nil then
        pcall(flush, s)   -- the alert, best effort
      else
        flush(s)
      end
    end
    if done then return end
    if done == nil then error(fail(s, msg, code), 0) end
    pull(s)
  end
end

local function receive_loop(s, m)
  local eng = s.eng
  loom.checkpoint_if_cancelled()
  local waited = false
  while true do
    local data, msg, code = eng:read(m)
    if eng:has_output() then
      -- Plaintext in hand is returned even if this write fails (the
      -- failure shows at the next call; the bytes wait in the engine).
      local ok, err = pcall(flush, s)
      if not ok and not data then rethrow(err) end
    end
    if data then
      -- A checkpoint: one that did not wait for the transport yields once
      -- (shielded: the plaintext it took is never lost).
      if not waited then loom.cancel_shielded_checkpoint() end
      return data
    end
    if data == nil then
      if msg == nil or (code == "UNEXPECTED_EOF"
          and not s.standard_compatible) then
        s.eof_received = true
        error(errors.EndOfStream("receive: the peer closed the TLS "
          .. "session"), 0)
      end
      error(fail(s, msg, code), 0)
    end
    pull(s)
    waited = true
  end
end

--- s:receive([max_bytes]) -> plaintext; EndOfStream after the peer's
--- close_notify (or a bare close, with standard_compatible = false).
function TLSStream.receive(s, max_bytes)
  check_stream(s, "receive")
  core.check_in_task("TLSStream:receive")
  if max_bytes == nil then max_bytes = 65536 end
  local m = math.type(max_bytes) == "float" and math.tointeger(max_bytes)
    or max_bytes
  if math.type(m) ~= "integer" then
    argerror(1, "receive", "max_bytes must be an integer, got "
      .. tname(max_bytes))
  end
  if m < 1 then argerror(1, "receive", "max_bytes must be at least 1") end
  if s.receiving then error(busy("reading from"), 2) end
  if s.eof_received then
    loom.checkpoint()
    error(errors.EndOfStream("receive: the peer closed the TLS session"), 2)
  end
  if s.broken then
    error(errors.BrokenResourceError("receive: the TLS session is broken"), 2)
  end
  s.receiving = true
  local ok, r = pcall(receive_loop, s, m)
  s.receiving = false
  if not ok then rethrow(r) end
  return r
end

-- Once the engine took the plaintext, any failure to hand its records to
-- the transport (a cancellation included) leaves the stream broken.
local function send_locked(s, data)
  loom.checkpoint_if_cancelled()
  local w, msg, code = s.eng:write(data)
  if not w then error(fail(s, msg, code), 0) end
  local ok, err = pcall(send_output, s)
  if not ok then
    s.broken = true
    rethrow(err)
  end
end

--- s:send(data): returns once the transport's send of the records
--- returned.
function TLSStream.send(s, data)
  check_stream(s, "send")
  core.check_in_task("TLSStream:send")
  if type(data) ~= "string" then
    argerror(1, "send", "string expected, got " .. tname(data))
  end
  if s.sending then error(busy("writing to"), 2) end
  if s.eof_sent then
    error(errors.ClosedResourceError("send: cannot send after send_eof()"), 2)
  end
  if s.broken then
    error(errors.BrokenResourceError("send: the TLS session is broken"), 2)
  end
  s.sending = true
  local ok, err = pcall(out_acquire, s)
  if not ok then
    s.sending = false
    rethrow(err)
  end
  ok, err = pcall(send_locked, s, data)
  out_release(s)
  s.sending = false
  if not ok then
    if not errors.is_cancelled(err) then s.broken = true end
    rethrow(err)
  end
end

--- s:send_eof(): sends close_notify; the stream can still receive.
function TLSStream.send_eof(s)
  check_stream(s, "send_eof")
  core.check_in_task("TLSStream:send_eof")
  if s.sending then error(busy("writing to"), 2) end
  if s.eof_sent then return loom.checkpoint() end
  s.eof_sent = true
  s.eng:shutdown()
  flush(s)
end

--- s:close(): sends close_notify without waiting for the peer's, then
--- closes the transport. Idempotent.
function TLSStream.close(s)
  if getmetatable(s) ~= TLSStream then
    args.selferror("close", "loom.TLSStream", type(s))
  end
  if s.closed then return end
  s.closed = true
  if s.standard_compatible and not s.broken and not s.out_busy
      and not s.eof_sent then
    s.eng:shutdown()
    local out = s.eng:take_output()
    if #out > 0 then
      -- Best effort, bounded: a peer that stopped reading cannot hold
      -- close() up, nor can the closing task's own cancellation.
      pcall(function()
        loom.cancel_scope{ deadline = loom.now() + 0.25, shield = true }
          :run(function() s.transport:send(out) end)
      end)
    end
  end
  s.transport:close()
  s.eng:free()
end

TLSStream.__close = TLSStream.close

function TLSStream.alpn_protocol(s)
  check_stream(s, "alpn_protocol")
  return s.eng:alpn_protocol()
end

function TLSStream.peer_certificate(s)
  check_stream(s, "peer_certificate")
  return s.eng:peer_certificate()
end

function TLSStream.tls_version(s)
  check_stream(s, "tls_version")
  return s.eng:version()
end

function TLSStream.local_address(s)
  check_stream(s, "local_address")
  return s.transport:local_address()
end

function TLSStream.remote_address(s)
  check_stream(s, "remote_address")
  return s.transport:remote_address()
end

-- Options -------------------------------------------------------------------

local known = { server_side = true, hostname = true, verify = true,
                cafile = true, certfile = true, keyfile = true, alpn = true,
                standard_compatible = true }

local function check_opts(opts, n, fname, server)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    argerror(n, fname, "table expected, got " .. type(opts), 3)
  end
  for k in pairs(opts) do
    if not known[k] then
      argerror(n, fname, "unknown option '" .. tostring(k) .. "'", 3)
    end
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  if server ~= nil then o.server_side = server end
  for _, k in ipairs({ "server_side", "verify", "standard_compatible" }) do
    if o[k] ~= nil and type(o[k]) ~= "boolean" then
      argerror(n, fname, k .. " must be a boolean, got " .. type(o[k]), 3)
    end
  end
  for _, k in ipairs({ "hostname", "cafile", "certfile", "keyfile" }) do
    local v = o[k]
    if v ~= nil and (type(v) ~= "string" or v == ""
        or v:find("\0", 1, true)) then
      argerror(n, fname, k .. " must be a non-empty string, got "
        .. (type(v) == "string" and "''" or type(v)), 3)
    end
  end
  if o.alpn ~= nil then
    if type(o.alpn) ~= "table" then
      argerror(n, fname, "alpn must be an array of strings, got "
        .. type(o.alpn), 3)
    end
    for i, p in ipairs(o.alpn) do
      if type(p) ~= "string" or #p == 0 or #p > 255 then
        argerror(n, fname, ("alpn[%d] must be a string of 1..255 bytes")
          :format(i), 3)
      end
    end
  end
  if o.server_side and o.certfile == nil then
    argerror(n, fname, "certfile is required on the server side", 3)
  end
  if not o.server_side and o.verify ~= false and o.hostname == nil then
    argerror(n, fname, "hostname is required to verify the server "
      .. "(or pass verify = false)", 3)
  end
  if o.standard_compatible == nil then o.standard_compatible = true end
  return o
end

local function new_context(o)
  local ctx, msg, code = core.tls_context(o)
  if ctx == nil then
    error(TLSError("TLS setup failed: " .. msg, { code = code }), 0)
  end
  return ctx
end

local function new_stream(transport, ctx, o)
  local eng = core.tls_engine(ctx, not o.server_side and o.hostname or nil)
  return setmetatable({
    transport = transport, eng = eng,
    standard_compatible = o.standard_compatible,
    out_busy = false, out_ev = false, receiving = false, sending = false,
    closed = false,
    broken = false, eof_sent = false, eof_received = false,
    transport_eof = false,
  }, TLSStream)
end

-- Handshake s; on failure free its engine and raise.
local function establish(s)
  local ok, err = pcall(handshake, s)
  if not ok then
    s.closed = true
    s.eng:free()
    rethrow(err)
  end
  return s
end

-- Listeners -----------------------------------------------------------------

local TLSListener = {}
TLSListener.__index = TLSListener
TLSListener.__name = "loom.TLSListener"

function TLSListener.__tostring(l)
  return "loom.TLSListener: over " .. tostring(l.listener)
end

local function check_listener(l, fname)
  if getmetatable(l) ~= TLSListener then
    args.selferror(fname, "loom.TLSListener", type(l), 3)
  end
  if l.closed then
    error(errors.ClosedResourceError(fname .. ": the listener is closed"), 3)
  end
end

local function drop(s)
  s.closed = true
  pcall(s.transport.close, s.transport)
  s.eng:free()
end

--- l:accept() -> a handshaken TLSStream. Handshakes of the connections
--- accepted so far run concurrently; one that fails is closed and skipped;
--- one still pending when another completes waits for the next accept.
function TLSListener.accept(l)
  check_listener(l, "accept")
  core.check_in_task("TLSListener:accept")
  if l.accepting then error(busy("accepting connections from"), 2) end
  if #l.ready > 0 then
    loom.checkpoint()
    return table.remove(l.ready, 1)
  end
  l.accepting = true
  local ok, err = pcall(loom.task_group, function(tg)
    local function drive(s)
      local hok, herr = pcall(handshake, s)
      if hok then
        l.pending[s] = nil
        l.ready[#l.ready + 1] = s
        tg.cancel_scope:cancel()
      elseif errors.is_cancelled(herr) then
        rethrow(herr)         -- resumed by the next accept()
      else
        l.pending[s] = nil
        drop(s)
      end
    end
    for s in pairs(l.pending) do tg:start_soon(drive, s) end
    tg:start_soon(function()
      while true do
        local raw = l.listener:accept()
        local s = new_stream(raw, l.ctx, l.opts)
        l.pending[s] = true
        tg:start_soon(drive, s)
      end
    end)
  end)
  l.accepting = false
  if not ok then rethrow(err) end
  return table.remove(l.ready, 1)
end

local function serve_one(l, handler, raw)
  local s = new_stream(raw, l.ctx, l.opts)
  local ok, err = pcall(handshake, s)
  if not ok then
    drop(s)
    if errors.is_cancelled(err) then rethrow(err) end
    return
  end
  local stream <close> = s
  return handler(stream)
end

--- l:serve(handler[, tg]): each connection gets its own task, which does
--- the handshake and then runs handler(stream); failed handshakes are
--- closed and dropped. The stream is closed when the handler returns.
function TLSListener.serve(l, handler, tg)
  check_listener(l, "serve")
  core.check_in_task("TLSListener:serve")
  if not args.callable(handler) then
    argerror(1, "serve", "function expected, got " .. tname(handler))
  end
  local function loop(group)
    while true do
      local raw = l.listener:accept()
      local ok, err = pcall(group.start_soon, group, serve_one, l, handler,
        raw)
      if not ok then
        raw:close()
        rethrow(err)
      end
    end
  end
  if tg ~= nil then return loop(tg) end
  return loom.task_group(loop)
end

function TLSListener.close(l)
  if getmetatable(l) ~= TLSListener then
    args.selferror("close", "loom.TLSListener", type(l))
  end
  if l.closed then return end
  l.closed = true
  for s in pairs(l.pending) do drop(s) end
  for _, s in ipairs(l.ready) do drop(s) end
  l.pending, l.ready = {}, {}
  l.listener:close()
end

TLSListener.__close = TLSListener.close

-- Both classes are strict (a misspelt member raises "did you mean") and
-- registered under their __name like the C classes, so that the docs check
-- finds them. Instances keep every field they read (false, never nil).
TLSStream.__fields = { "transport" }
diagnostics.strict(TLSStream)
debug.getregistry()["loom.TLSStream"] = TLSStream
diagnostics.strict(TLSListener)
debug.getregistry()["loom.TLSListener"] = TLSListener

function TLSListener.local_address(l)
  check_listener(l, "local_address")
  return l.listener:local_address()
end

-- Install -------------------------------------------------------------------

function M.install(lm, c)
  loom, core = lm, c
  loom.TLSError = TLSError

  --- loom.wrap_tls(stream, opts) -> TLSStream, after the handshake.
  function loom.wrap_tls(stream, opts)
    if (type(stream) ~= "table" and type(stream) ~= "userdata")
        or diagnostics.has(stream, "receive") == nil
        or diagnostics.has(stream, "send") == nil then
      argerror(1, "wrap_tls", "stream expected, got " .. tname(stream))
    end
    local o = check_opts(opts, 2, "wrap_tls")
    core.check_in_task("wrap_tls")
    return establish(new_stream(stream, new_context(o), o))
  end

  --- loom.tls_listener(listener, opts) -> TLSListener (server side).
  function loom.tls_listener(listener, opts)
    if (type(listener) ~= "table" and type(listener) ~= "userdata")
        or diagnostics.has(listener, "accept") == nil then
      argerror(1, "tls_listener", "listener expected, got "
        .. tname(listener))
    end
    local o = check_opts(opts, 2, "tls_listener", true)
    return setmetatable({ listener = listener, ctx = new_context(o),
                          opts = o, pending = {}, ready = {},
                          closed = false, accepting = false }, TLSListener)
  end

  local connect_plain = loom.connect_tcp

  --- loom.connect_tcp(host, port[, {tls = true | opts}]): with tls, the
  --- stream is wrapped after connecting; hostname defaults to host.
  function loom.connect_tcp(host, port, opts)
    if opts == nil then return connect_plain(host, port) end
    if type(opts) ~= "table" then
      argerror(3, "connect_tcp", "table expected, got " .. type(opts))
    end
    for k in pairs(opts) do
      if k ~= "tls" then
        argerror(3, "connect_tcp", "unknown option '" .. tostring(k) .. "'")
      end
    end
    local tls = opts.tls
    if tls == nil or tls == false then return connect_plain(host, port) end
    if tls ~= true and type(tls) ~= "table" then
      argerror(3, "connect_tcp", "tls must be true or a table, got "
        .. type(tls))
    end
    local o = {}
    if type(tls) == "table" then for k, v in pairs(tls) do o[k] = v end end
    if o.hostname == nil and type(host) == "string" then o.hostname = host end
    o = check_opts(o, 3, "connect_tcp", false)
    local ctx = new_context(o)
    local raw = connect_plain(host, port)
    local ok, s = pcall(establish, new_stream(raw, ctx, o))
    if not ok then
      raw:close()
      rethrow(s)
    end
    return s
  end
end

return M
