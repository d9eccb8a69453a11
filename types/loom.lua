---@meta
-- LuaLS / EmmyLua type stubs for loom (`local loom = require("loom")`):
-- completion, hover docs and checks in editors. Add the types/ directory
-- to your language server's workspace library (see docs/api.md for the
-- full reference). `make docs-check` checks these stubs against loom.

---@class loom
---@field version string The version, "0.2.0".
---@field _VERSION string "loom " followed by the version.
---@field TASK_STATUS_IGNORED loom.TaskStatus A task status whose started() does nothing.
local loom = {}

-- Running and time ------------------------------------------------------------

---Runs `fn(...)` as the root task until it and every task it started finish.
---@param fn fun(...): ...
---@param ... any
---@return any ...
function loom.run(fn, ...) end

---Seconds on a monotonic clock.
---@return number
function loom.now() end

---Waits `delay` seconds (checkpoint).
---@async
---@param delay number
function loom.sleep(delay) end

---Waits until `loom.now()` reaches `deadline` (checkpoint).
---@async
---@param deadline number
function loom.sleep_until(deadline) end

---Waits until cancelled (checkpoint).
---@async
function loom.sleep_forever() end

---Lets other tasks run; raises Cancelled when cancelled.
---@async
function loom.checkpoint() end

---Raises Cancelled when cancelled; never switches tasks.
function loom.checkpoint_if_cancelled() end

---Lets other tasks run once; never raises Cancelled.
---@async
function loom.cancel_shielded_checkpoint() end

---Returns once every other task is blocked (for tests).
---@async
function loom.wait_all_tasks_blocked() end

---The running task's handle.
---@return loom.TaskHandle
function loom.current_task() end

---The running task's context table (copied into tasks it starts).
---@return table
function loom.context() end

---Every live task as a tree; `tostring` prints it.
---@return loom.TaskTree
function loom.task_tree() end

-- Plain data shapes are aliases: ---@class is kept for loom's classes.

---@alias loom.TaskTree { root: loom.TaskNode? } prints as a tree; root is nil outside loom.run

---@alias loom.TaskNode { handle: loom.TaskHandle, id: integer, name: string, status: string, waiting: string, where: string?, groups: { children: loom.TaskNode[], cancelled: boolean }[] }

-- Cancel scopes and timeouts -------------------------------------------------------

---@alias loom.CancelScopeOptions { deadline: number?, shield: boolean? }

---A new cancel scope, not entered yet.
---@param opts loom.CancelScopeOptions?
---@return loom.CancelScope
function loom.cancel_scope(opts) end

---Runs `fn(...)` with a deadline `delay` seconds away; returns the scope, then fn's results.
---@async
---@param delay number?
---@param fn fun(...): ...
---@param ... any
---@return loom.CancelScope scope
---@return any ...
function loom.move_on_after(delay, fn, ...) end

---Runs `fn(...)` with an absolute deadline; returns the scope, then fn's results.
---@async
---@param deadline number?
---@param fn fun(...): ...
---@param ... any
---@return loom.CancelScope scope
---@return any ...
function loom.move_on_at(deadline, fn, ...) end

---Runs `fn(...)` with a deadline `delay` seconds away; raises loom.TimeoutError when it passes.
---@async
---@param delay number?
---@param fn fun(...): ...
---@param ... any
---@return any ...
function loom.fail_after(delay, fn, ...) end

---Runs `fn(...)` with an absolute deadline; raises loom.TimeoutError when it passes.
---@async
---@param deadline number?
---@param fn fun(...): ...
---@param ... any
---@return any ...
function loom.fail_at(deadline, fn, ...) end

---The earliest deadline around the task up to the nearest shield.
---@return number
function loom.current_effective_deadline() end

---@class loom.CancelScope
---@field deadline number Assignable; math.huge when none.
---@field shield boolean Assignable.
---@field cancel_called boolean
---@field cancelled_caught boolean
---@field active boolean
local CancelScope = {}

---Enters the scope, calls `fn(...)`, leaves it; nothing when it caught a cancellation.
---@async
---@param fn fun(...): ...
---@param ... any
---@return any ...
function CancelScope:run(fn, ...) end

---Cancels the scope (idempotent, not a checkpoint).
---@param reason string?
function CancelScope:cancel(reason) end

-- Task groups ---------------------------------------------------------------

---Calls `body(tg)`, then waits for every task started in the group.
---@async
---@param body fun(tg: loom.TaskGroup): ...
---@return any ...
function loom.task_group(body) end

---@class loom.TaskGroup
---@field cancel_scope loom.CancelScope
local TaskGroup = {}

---Starts `fn(...)` as a new task of the group.
---@param fn fun(...)
---@param ... any
---@return loom.TaskHandle
function TaskGroup:start_soon(fn, ...) end

---The same as start_soon.
---@param fn fun(...)
---@param ... any
---@return loom.TaskHandle
function TaskGroup:create_task(fn, ...) end

---Starts `fn(task_status, ...)` and waits for task_status:started(value).
---@async
---@param fn fun(task_status: loom.TaskStatus, ...)
---@param ... any
---@return any value
---@return loom.TaskHandle handle
function TaskGroup:start(fn, ...) end

---Cancels the group's scope.
---@param reason string?
function TaskGroup:cancel(reason) end

---@class loom.TaskStatus
local TaskStatus = {}

---Tells tg:start that the task is ready; start returns `value`.
---@param value any
function TaskStatus:started(value) end

-- Task handles ----------------------------------------------------------------

---@alias loom.TaskStatusName "pending"|"cancelling"|"cancelled"|"failed"|"finished"

---@class loom.TaskHandle
---@field name string Assignable.
---@field id integer
local TaskHandle = {}

---@return loom.TaskStatusName
function TaskHandle:status() end

---@return boolean
function TaskHandle:done() end

---Cancels only this task.
---@param reason string?
function TaskHandle:cancel(reason) end

---Waits until the task has finished; never raises its error.
---@async
function TaskHandle:wait() end

---Waits, then returns the task's results or raises loom.TaskFailed / loom.TaskCancelled.
---@async
---@return any ...
function TaskHandle:result() end

---The task's results without waiting (raises loom.TaskNotFinished while pending).
---@return any ...
function TaskHandle:return_value() end

---The task's original error or nil, without waiting.
---@return any
function TaskHandle:error() end

---The handle of the task hosting this task's group.
---@return loom.TaskHandle?
function TaskHandle:parent() end

-- Gathering -------------------------------------------------------------------

---@alias loom.GatherOptions { return_exceptions: boolean? }

---@alias loom.GatherError { error: any, traceback: string }

---Runs every function concurrently; returns their first results and the errors.
---@async
---@param fns (fun(): any)[]
---@param opts loom.GatherOptions?
---@return { n: integer, [integer]: any } results
---@return table<integer, loom.GatherError> errors
function loom.gather(fns, opts) end

-- Errors ----------------------------------------------------------------------

---@class loom.Error
---@field message string
---@operator call(string?): loom.Error
loom.Error = {}

---@class loom.Cancelled: loom.Error
---@field reason string?
---@field deadline boolean?
loom.Cancelled = {}

---@class loom.TimeoutError: loom.Error
---@field default_message string
loom.TimeoutError = {}

---@class loom.TaskFailed: loom.Error
---@field cause any
---@field traceback string?
loom.TaskFailed = {}

---@class loom.TaskCancelled: loom.TaskFailed
loom.TaskCancelled = {}

---@class loom.TaskNotFinished: loom.Error
loom.TaskNotFinished = {}

---@class loom.WouldBlock: loom.Error
loom.WouldBlock = {}

---@class loom.EndOfStream: loom.Error
loom.EndOfStream = {}

---@class loom.IncompleteRead: loom.EndOfStream
---@field cause any
loom.IncompleteRead = {}

---@class loom.DelimiterNotFound: loom.Error
---@field max_bytes integer
loom.DelimiterNotFound = {}

---@class loom.ClosedResourceError: loom.Error
loom.ClosedResourceError = {}

---@class loom.BrokenResourceError: loom.Error
loom.BrokenResourceError = {}

---@class loom.BusyResourceError: loom.Error
loom.BusyResourceError = {}

---@class loom.OSError: loom.Error
---@field code string? The libuv error name, such as "ECONNREFUSED".
---@field errors loom.OSError[]? Each attempt's error (connect_tcp).
loom.OSError = {}

---@class loom.ErrorGroup: loom.Error
---@field errors any[]
---@field tracebacks (string|false)[]
---@field default_message string
---@operator call(string?, any[], string[]?): loom.ErrorGroup
local ErrorGroup = {}
loom.ErrorGroup = ErrorGroup

---Builds a group (the same as calling loom.ErrorGroup).
---@param message string?
---@param errors any[]
---@param tracebacks (string|false)[]?
---@return loom.ErrorGroup
function ErrorGroup.new(message, errors, tracebacks) end

---@alias loom.Matcher loom.Error|(fun(err: any): boolean)|string

---Splits the group: the matching errors and the rest (either nil when empty).
---@param matcher loom.Matcher
---@return loom.ErrorGroup? match
---@return loom.ErrorGroup? rest
function ErrorGroup:split(matcher) end

---The matching part of split, or nil.
---@param matcher loom.Matcher
---@return loom.ErrorGroup?
function ErrorGroup:subgroup(matcher) end

---Every non-group error, depth first.
---@return any[]
function ErrorGroup:leaves() end

---Is `err` an instance of `class` (or of a subclass)?
---@param err any
---@param class loom.Error
---@return boolean
function loom.is(err, class) end

---Is `err` a loom.Cancelled?
---@param err any
---@return boolean
function loom.is_cancelled(err) end

---A new error class.
---@param name string
---@param parent loom.Error?
---@return loom.Error
function loom.error_class(name, parent) end

---Runs `fn(...)`, handing raised errors to the first matching handler (except*).
---@param handlers { [1]: loom.Matcher, [2]: fun(eg: loom.ErrorGroup) }[]
---@param fn fun(...): ...
---@param ... any
---@return any ...
function loom.catch(handlers, fn, ...) end

-- Synchronisation ---------------------------------------------------------------

---@alias loom.LockOptions { fast_acquire: boolean? }

---A new unset event.
---@return loom.Event
function loom.event() end

---@class loom.Event
local Event = {}

function Event:set() end

---@return boolean
function Event:is_set() end

---@async
function Event:wait() end

---@return { tasks_waiting: integer }
function Event:statistics() end

---A new lock.
---@param opts loom.LockOptions?
---@return loom.Lock
function loom.lock(opts) end

---@class loom.Lock
local Lock = {}

---Waits for the lock; returns it (a `<close>` guard).
---@async
---@return loom.Lock
function Lock:acquire() end

---@return loom.Lock
function Lock:acquire_nowait() end

function Lock:release() end

---@return boolean
function Lock:locked() end

---@return { locked: boolean, owner: loom.TaskHandle?, tasks_waiting: integer }
function Lock:statistics() end

---A new semaphore.
---@param initial integer
---@param max_value integer?
---@param opts loom.LockOptions?
---@return loom.Semaphore
function loom.semaphore(initial, max_value, opts) end

---@class loom.Semaphore
---@field value integer
---@field max_value integer?
local Semaphore = {}

---@async
---@return loom.Semaphore
function Semaphore:acquire() end

---@return loom.Semaphore
function Semaphore:acquire_nowait() end

function Semaphore:release() end

---@return { tasks_waiting: integer }
function Semaphore:statistics() end

---A new condition over `lock` (or a new lock).
---@param lock loom.Lock?
---@return loom.Condition
function loom.condition(lock) end

---@class loom.Condition
local Condition = {}

---@async
---@return loom.Condition
function Condition:acquire() end

---@return loom.Condition
function Condition:acquire_nowait() end

function Condition:release() end

---@return boolean
function Condition:locked() end

---@async
function Condition:wait() end

---@async
---@param predicate fun(): any
---@return any
function Condition:wait_for(predicate) end

---@param n integer?
function Condition:notify(n) end

function Condition:notify_all() end

---@return { tasks_waiting: integer, lock_statistics: table }
function Condition:statistics() end

---A new capacity limiter.
---@param total_tokens number
---@return loom.CapacityLimiter
function loom.capacity_limiter(total_tokens) end

---@class loom.CapacityLimiter
---@field total_tokens number Assignable.
---@field borrowed_tokens integer
---@field available_tokens number
local CapacityLimiter = {}

---@async
---@return loom.CapacityLimiter
function CapacityLimiter:acquire() end

---@return loom.CapacityLimiter
function CapacityLimiter:acquire_nowait() end

---@async
---@param borrower any
function CapacityLimiter:acquire_on_behalf_of(borrower) end

---@param borrower any
function CapacityLimiter:acquire_on_behalf_of_nowait(borrower) end

function CapacityLimiter:release() end

---@param borrower any
function CapacityLimiter:release_on_behalf_of(borrower) end

---@return table
function CapacityLimiter:statistics() end

-- Channels ----------------------------------------------------------------------

---A memory channel: its send and receive ends.
---@param max_buffer_size number?
---@return loom.SendChannel send
---@return loom.ReceiveChannel receive
function loom.channel(max_buffer_size) end

---@class loom.SendChannel
local SendChannel = {}

---@async
---@param item any
function SendChannel:send(item) end

---@param item any
function SendChannel:send_nowait(item) end

---@return loom.SendChannel
function SendChannel:clone() end

function SendChannel:close() end

---@return table
function SendChannel:statistics() end

---@class loom.ReceiveChannel
---@overload fun(): any
local ReceiveChannel = {}

---@async
---@return any
function ReceiveChannel:receive() end

---@return any
function ReceiveChannel:receive_nowait() end

---@return loom.ReceiveChannel
function ReceiveChannel:clone() end

function ReceiveChannel:close() end

---@return table
function ReceiveChannel:statistics() end

-- Networking ----------------------------------------------------------------------

---Connects to host:port; with opts.tls, returns a handshaken TLSStream.
---@async
---@param host string
---@param port integer
---@param opts? { tls: boolean|loom.TLSOptions|nil }
---@return loom.TCPStream|loom.TLSStream
function loom.connect_tcp(host, port, opts) end

---@alias loom.TCPListenerOptions { local_host: string?, local_port: integer?, backlog: integer? }

---Binds a listening TCP socket.
---@param opts loom.TCPListenerOptions?
---@return loom.TCPListener
function loom.create_tcp_listener(opts) end

---@alias loom.Addrinfo { family: "inet"|"inet6", address: string, port: integer }

---Resolves a host name.
---@async
---@param host string
---@param port integer?
---@return loom.Addrinfo[]
function loom.getaddrinfo(host, port) end

---@class loom.TCPStream
local TCPStream = {}

---@async
---@param max_bytes integer?
---@return string
function TCPStream:receive(max_bytes) end

---@async
---@param data string
function TCPStream:send(data) end

---@async
function TCPStream:send_eof() end

function TCPStream:close() end

---@return string host
---@return integer port
function TCPStream:local_address() end

---@return string host
---@return integer port
function TCPStream:remote_address() end

---@class loom.TCPListener
local TCPListener = {}

---@async
---@return loom.TCPStream
function TCPListener:accept() end

---Runs handler(stream) for each connection until cancelled.
---@async
---@param handler fun(stream: loom.TCPStream)
---@param tg loom.TaskGroup?
function TCPListener:serve(handler, tg) end

---@return string host
---@return integer port
function TCPListener:local_address() end

function TCPListener:close() end

---Wraps a stream to read exact amounts and up to delimiters.
---@param stream { receive: fun(self: any, max_bytes: integer): string }
---@return loom.BufferedStream
function loom.buffered(stream) end

---@class loom.BufferedStream
---@field buffer string
---@field stream any
local BufferedStream = {}

---@async
---@param max_bytes integer?
---@return string
function BufferedStream:receive(max_bytes) end

---@async
---@param n integer
---@return string
function BufferedStream:receive_exactly(n) end

---@async
---@param delim string
---@param max_bytes integer
---@return string
function BufferedStream:receive_until(delim, max_bytes) end

---@async
---@param data string
function BufferedStream:send(data) end

---@async
function BufferedStream:send_eof() end

function BufferedStream:close() end

---@return string host
---@return integer port
function BufferedStream:local_address() end

---@return string host
---@return integer port
function BufferedStream:remote_address() end

return loom
