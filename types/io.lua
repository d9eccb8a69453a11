---@meta
-- LuaLS stubs for loom's files, UDP, TLS and fd readiness (docs/files.md,
-- docs/net.md).

-- The table loom.fs.stat and File:stat return (plain data).
---@alias loom.Stat { size: integer, mode: integer, type: "file"|"directory"|"link"|"fifo"|"socket"|"char"|"block"|"unknown", mtime: number, atime: number, ctime: number, nlink: integer, uid: integer, gid: integer, ino: integer, dev: integer, blksize: integer, blocks: integer }

---@class loom.File
local File = {}

---@async
---@param ... "l"|"L"|"a"|"n"|integer
---@return string|number|nil ...
function File:read(...) end

---@param ... "l"|"L"|"a"|"n"|integer
---@return fun(): (string|number|nil)
function File:lines(...) end

---@async
---@param ... string|number
---@return loom.File
function File:write(...) end

---@async
---@param whence? "set"|"cur"|"end"
---@param offset? integer
---@return integer position
function File:seek(whence, offset) end

---@async
---@return loom.File
function File:flush() end

---@param mode "no"|"full"|"line"
---@param size? integer
---@return true
function File:setvbuf(mode, size) end

---@async
---@return loom.Stat
function File:stat() end

---@async
function File:close() end

---@async
---@param path string
---@param mode? "r"|"w"|"a"|"r+"|"w+"|"a+"|"rb"|"wb"|"ab"|"r+b"|"w+b"|"a+b"
---@return loom.File
function loom.open_file(path, mode) end

-- The file system functions (a table of functions, not a class).
loom.fs = {}

---@async
---@param path string
---@return loom.Stat
function loom.fs.stat(path) end

---@async
---@param path string
---@return loom.Stat
function loom.fs.lstat(path) end

---@async
---@param path string
---@return boolean
function loom.fs.exists(path) end

---@async
---@param path string
---@return string
function loom.fs.read_file(path) end

---@async
---@param path string
---@param data string
function loom.fs.write_file(path, data) end

---@async
---@param path string
---@param opts? {parents?: boolean, mode?: integer}
function loom.fs.mkdir(path, opts) end

---@async
---@param path string
function loom.fs.rmdir(path) end

---@async
---@param path string
function loom.fs.unlink(path) end

---@async
---@param from string
---@param to string
function loom.fs.rename(from, to) end

---@async
---@param from string
---@param to string
function loom.fs.copyfile(from, to) end

---@async
---@param path string
---@return fun(): (string?, string?) iterator of name, type
function loom.fs.readdir(path) end

---@async
---@param path string
---@return string
function loom.fs.realpath(path) end

---@async
---@param prefix string
---@return string
function loom.fs.mkdtemp(prefix) end

---@class loom.UDPSocket
local UDPSocket = {}

---@async
---@param data string
---@param host string
---@param port integer
function UDPSocket:send_to(data, host, port) end

---@async
---@return string data, string host, integer port
function UDPSocket:receive_from() end

---@return string host, integer port
function UDPSocket:local_address() end

---@return "inet"|"inet6"
function UDPSocket:family() end

function UDPSocket:close() end

---@class loom.ConnectedUDPSocket
local ConnectedUDPSocket = {}

---@async
---@param data string
function ConnectedUDPSocket:send(data) end

---@async
---@return string
function ConnectedUDPSocket:receive() end

---@return string host, integer port
function ConnectedUDPSocket:remote_address() end

---@return string host, integer port
function ConnectedUDPSocket:local_address() end

---@return "inet"|"inet6"
function ConnectedUDPSocket:family() end

function ConnectedUDPSocket:close() end

---@param opts {local_host?: string, local_port?: integer, family?: "inet"|"inet6", reuse_port?: boolean}
---@return loom.UDPSocket
function loom.create_udp_socket(opts) end

---@param opts {remote_host: string, remote_port: integer, local_host?: string, local_port?: integer, family?: "inet"|"inet6", reuse_port?: boolean}
---@return loom.ConnectedUDPSocket
function loom.create_connected_udp_socket(opts) end

-- The options of wrap_tls, tls_listener and connect_tcp's tls.
---@alias loom.TLSOptions { server_side?: boolean, hostname?: string, verify?: boolean, cafile?: string, certfile?: string, keyfile?: string, alpn?: string[], standard_compatible?: boolean }

-- What TLSStream:peer_certificate returns (plain data).
---@alias loom.PeerCertificate { subject: string, issuer: string, not_before: integer, not_after: integer, san: string[], pem: string }

---@class loom.TLSStream
---@field transport any the wrapped stream
local TLSStream = {}

---@async
---@param max_bytes? integer
---@return string
function TLSStream:receive(max_bytes) end

---@async
---@param data string
function TLSStream:send(data) end

---@async
function TLSStream:send_eof() end

---@async
function TLSStream:close() end

---@return string?
function TLSStream:alpn_protocol() end

---@return loom.PeerCertificate?
function TLSStream:peer_certificate() end

---@return string
function TLSStream:tls_version() end

---@return string host, integer port
function TLSStream:local_address() end

---@return string host, integer port
function TLSStream:remote_address() end

---@class loom.TLSListener
local TLSListener = {}

---@async
---@return loom.TLSStream
function TLSListener:accept() end

---@async
---@param handler fun(stream: loom.TLSStream)
---@param tg? any a task group
function TLSListener:serve(handler, tg) end

function TLSListener:close() end

---@return string host, integer port
function TLSListener:local_address() end

---@async
---@param stream any a loom stream
---@param opts loom.TLSOptions
---@return loom.TLSStream
function loom.wrap_tls(stream, opts) end

---@param listener any a loom listener
---@param opts loom.TLSOptions
---@return loom.TLSListener
function loom.tls_listener(listener, opts) end

---TLS failures: a loom.BrokenResourceError with .code.
loom.TLSError = {}

---@async
---@param fd integer|number|{getfd: fun(self): number}
function loom.wait_readable(fd) end

---@async
---@param fd integer|number|{getfd: fun(self): number}
function loom.wait_writable(fd) end
