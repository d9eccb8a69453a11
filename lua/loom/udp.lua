-- loom.udp: option checks and name resolution for UDP sockets; the C core
-- (udp.c) does the I/O on numeric addresses. Follows AnyIO's
-- create_udp_socket / create_connected_udp_socket.

local M = {}

local args = require("loom.args")
local argerror, tname = args.argerror, args.tname

local check_port = args.check_port

local function check_host(v, n, fname, what)
  if type(v) ~= "string" then
    argerror(n, fname, what .. " must be a string, got " .. tname(v), 3)
  end
  if v == "" or v:find("\0", 1, true) then
    argerror(n, fname, what .. " must be a non-empty string without NUL", 3)
  end
end

function M.install(loom, core)
  local udp_open, ip_family = core.udp_open, core.ip_family
  local getaddrinfo = core.getaddrinfo

  -- A numeric address for host, of `family` when given.
  local function resolve(host, port, family, fname)
    local f = ip_family(host)
    if f then
      if family and f ~= family then
        error(loom.OSError(("%s: address family mismatch: %s is not %s")
          :format(fname, host, family), { code = "EAFNOSUPPORT" }), 3)
      end
      return host, f
    end
    for _, a in ipairs(getaddrinfo(host, port)) do
      if family == nil or a.family == family then return a.address, a.family end
    end
    error(loom.OSError(("%s: no %s address for %s"):format(fname, family,
      host), { code = "EAI_ADDRFAMILY" }), 3)
  end

  local function check_opts(opts, fname, known)
    if type(opts) ~= "table" then
      argerror(1, fname, "table expected, got " .. tname(opts), 3)
    end
    for k in pairs(opts) do
      if not known[k] then
        argerror(1, fname, "unknown option '" .. tostring(k) .. "'", 3)
      end
    end
    local family = opts.family
    if family ~= nil and family ~= "inet" and family ~= "inet6" then
      argerror(1, fname, "family must be \"inet\" or \"inet6\", got "
        .. tostring(family), 3)
    end
    if opts.reuse_port ~= nil and type(opts.reuse_port) ~= "boolean" then
      argerror(1, fname, "reuse_port must be a boolean", 3)
    end
  end

  local any = { inet = "0.0.0.0", inet6 = "::" }
  local udp_opts = { local_host = true, local_port = true, family = true,
                     reuse_port = true }

  --- loom.create_udp_socket{local_host=, local_port=, family=, reuse_port=}
  --- -> UDPSocket. As in AnyIO, family or local_host must be given.
  function loom.create_udp_socket(opts)
    local fname = "create_udp_socket"
    if opts == nil then opts = {} end
    check_opts(opts, fname, udp_opts)
    local host, family = opts.local_host, opts.family
    if host == nil and family == nil then
      argerror(1, fname, "either family or local_host must be given")
    end
    local port = 0
    if opts.local_port ~= nil then
      port = check_port(opts.local_port, 1, fname, "local_port", 0)
    end
    if host == nil then
      host = any[family]
    else
      check_host(host, 1, fname, "local_host")
      host = resolve(host, port, family, fname)
    end
    return udp_open(host, port, opts.reuse_port)
  end

  local cudp_opts = { remote_host = true, remote_port = true,
                      local_host = true, local_port = true, family = true,
                      reuse_port = true }

  --- loom.create_connected_udp_socket{remote_host=, remote_port=,
  --- local_host=, local_port=, family=, reuse_port=} -> ConnectedUDPSocket.
  function loom.create_connected_udp_socket(opts)
    local fname = "create_connected_udp_socket"
    check_opts(opts, fname, cudp_opts)
    check_host(opts.remote_host, 1, fname, "remote_host")
    local rport = check_port(opts.remote_port, 1, fname, "remote_port", 1)
    local lport = 0
    if opts.local_port ~= nil then
      lport = check_port(opts.local_port, 1, fname, "local_port", 0)
    end
    local family = opts.family
    local lhost = opts.local_host
    if lhost ~= nil then
      check_host(lhost, 1, fname, "local_host")
      lhost, family = resolve(lhost, lport, family, fname)
    end
    local rhost
    rhost, family = resolve(opts.remote_host, rport, family, fname)
    return udp_open(lhost or any[family], lport, opts.reuse_port, rhost,
      rport)
  end

  local send_to = core.udp_socket_methods.send_to

  --- sock:send_to(data, host, port): a name is resolved first (to an
  --- address of the socket's family).
  function core.udp_socket_methods.send_to(sock, data, host, port)
    if type(data) ~= "string" then
      argerror(1, "send_to", "string expected, got " .. tname(data))
    end
    check_host(host, 2, "send_to", "host")
    port = check_port(port, 3, "send_to", "port", 0)
    if not ip_family(host) then
      host = resolve(host, port, sock:family(), "send_to")
    end
    return send_to(sock, data, host, port)
  end
end

return M
