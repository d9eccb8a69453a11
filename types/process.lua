---@meta
-- LuaLS stubs: processes, Unix sockets, stdio streams, signals, Ctrl-C.

---@class loom
local loom = {}

---@alias loom.StdioMode "pipe"|"inherit"|"null"

---Options of loom.run_process: input is written to stdin, which is then
---closed; stdin defaults to "inherit", stdout and stderr to "pipe"
---(captured; stderr "stdout" merges it into stdout); check (default true)
---raises CalledProcessError for a non-zero exit; env replaces the
---environment.
---@alias loom.RunProcessOpts { input: string?, stdin: loom.StdioMode?, stdout: loom.StdioMode?, stderr: (loom.StdioMode|"stdout")?, check: boolean?, cwd: string?, env: table<string, string>?, start_new_session: boolean? }

---Options of loom.open_process: stdin, stdout and stderr default to "pipe".
---@alias loom.OpenProcessOpts { stdin: loom.StdioMode?, stdout: loom.StdioMode?, stderr: (loom.StdioMode|"stdout")?, cwd: string?, env: table<string, string>?, start_new_session: boolean? }

---What loom.run_process returns: args is cmd as given, returncode the
---exit status or -signum, stdout/stderr the captured output (nil when not
---piped).
---@alias loom.CompletedProcess { args: string|string[], returncode: integer, stdout: string?, stderr: string? }

---@class loom.PipeStream
local PipeStream = {}
---@async
---@param max_bytes? integer
---@return string
function PipeStream:receive(max_bytes) end
---@async
---@param data string
function PipeStream:send(data) end
---@async
function PipeStream:send_eof() end
function PipeStream:close() end

---@class loom.Process
---@field pid integer
---@field args string|string[]
---@field returncode integer|nil nil while running
---@field stdin loom.PipeStream|nil
---@field stdout loom.PipeStream|nil
---@field stderr loom.PipeStream|nil
local Process = {}
---@async
---@return integer returncode
function Process:wait() end
---@param sig string|integer
function Process:send_signal(sig) end
function Process:terminate() end
function Process:kill() end
---@async
function Process:close() end

---@class loom.UnixStream
local UnixStream = {}
---@async
---@param max_bytes? integer
---@return string
function UnixStream:receive(max_bytes) end
---@async
---@param data string
function UnixStream:send(data) end
---@async
function UnixStream:send_eof() end
function UnixStream:close() end
---@return string path
function UnixStream:local_address() end
---@return string path
function UnixStream:remote_address() end

---@class loom.UnixListener
local UnixListener = {}
---@async
---@return loom.UnixStream
function UnixListener:accept() end
---@async
---@param handler fun(stream: loom.UnixStream)
---@param tg? loom.TaskGroup
function UnixListener:serve(handler, tg) end
---@return string path
function UnixListener:local_address() end
function UnixListener:close() end

---@class loom.SignalReceiver
local SignalReceiver = {}
---@async
---@return string|integer signal name ("SIGTERM")
function SignalReceiver:receive() end
function SignalReceiver:close() end

---@class loom.CalledProcessError: loom.Error
---@field returncode integer
---@field cmd string|string[]
---@field stdout string|nil
---@field stderr string|nil
loom.CalledProcessError = {}

---@class loom.Interrupted
---@field message string "interrupted!"
---@field errors any[] errors raised during the cleanup
loom.Interrupted = {}

---@async
---@param cmd string|string[]
---@param opts? loom.RunProcessOpts
---@return loom.CompletedProcess
function loom.run_process(cmd, opts) end

---@param cmd string|string[]
---@param opts? loom.OpenProcessOpts
---@return loom.Process
function loom.open_process(cmd, opts) end

---@async
---@param path string a file path, or "\0name" (Linux abstract)
---@return loom.UnixStream
function loom.connect_unix(path) end

---@param opts {path: string, mode?: integer, backlog?: integer}
---@return loom.UnixListener
function loom.create_unix_listener(opts) end

---@return loom.PipeStream
function loom.stdin() end
---@return loom.PipeStream
function loom.stdout() end
---@return loom.PipeStream
function loom.stderr() end

---@param ... string|integer signal names ("SIGTERM") or numbers
---@return loom.SignalReceiver
function loom.open_signal_receiver(...) end
