---@meta
-- LuaLS stubs for loom's worker threads (docs/threads.md).

---@class loom.ThreadError: loom.Error
---@field message string the worker's error text
---@field cause any the error value, copied (or its text)
---@field traceback string the worker's traceback

---Functions for code running in a worker thread.
loom.thread = {}

---Raise `Cancelled` in this worker when the task that called
---`loom.to_thread` was cancelled.
function loom.thread.check_cancelled() end

---Run `fn(...)` as a task of the runtime that called `loom.to_thread` and
---return its results (blocks this worker thread).
---@param fn function|string a function (only upvalue: _ENV) or "module.func"
---@param ... any copied values
---@return any ...
function loom.thread.run_sync(fn, ...) end

---Options of `loom.to_thread_with`: `abandon_on_cancel` leaves at once when
---cancelled; `limiter` is the limiter whose token the call holds.
---@alias loom.ThreadOptions { abandon_on_cancel: boolean?, limiter: loom.CapacityLimiter? }

---@type loom.ThreadError
loom.ThreadError = nil

---Run `fn(...)` in a worker thread and return its results.
---@async
---@param fn function|string a function (only upvalue: _ENV) or "module.func"
---@param ... any copied values (nil, booleans, numbers, strings, tables)
---@return any ...
function loom.to_thread(fn, ...) end

---`loom.to_thread` with options.
---@async
---@param opts loom.ThreadOptions
---@param fn function|string
---@param ... any
---@return any ...
function loom.to_thread_with(opts, fn, ...) end

---The capacity limiter (40 tokens) bounding this runtime's thread calls.
---@return loom.CapacityLimiter
function loom.current_default_thread_limiter() end
