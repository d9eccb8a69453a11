---@meta
-- LuaLS stubs: processes, Unix sockets, stdio streams, signals, Ctrl-C.

---@class loom
local loom = {}

---@alias loom.StdioMode "pipe"|"inherit"|"null"

---@class loom.RunProcessOpts
---@field input? string written to stdin, which is then closed
---@field stdin? loom.StdioMode default "inherit"
---@field stdout? loom.StdioMode default "pipe" (captured)
---@field stderr? loom.StdioMode|"stdout" default "pipe"; "stdout" merges
---@field check? boolean raise CalledProcessError if not 0 (default true)
---@field cwd? string
---@field env? table<string, string> replaces the environment
---@field start_new_session? boolean

---@class loom.OpenProcessOpts
---@field stdin? loom.StdioMode default "pipe"
---@field stdout? loom.StdioMode default "pipe"
---@field stderr? loom.StdioMode|"stdout" default "pipe"
---@field cwd? string
---@field env? table<string, string>
---@field start_new_session? boolean

---@class loom.CompletedProcess
---@field args string|string[] cmd as given
---@field returncode integer exit status, or -signum
---@field stdout string|nil
---@field stderr string|nil

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
