---@meta
-- LuaLS stubs for loom's worker threads (docs/threads.md).

---@class loom.ThreadError: loom.Error
---@field message string the worker's error text
---@field cause any the error value, copied (or its text)
---@field traceback string the worker's traceback

---@class loom.thread
local thread = {}

---Raise `Cancelled` in this worker when the task that called
---`loom.to_thread` was cancelled.
function thread.check_cancelled() end

---Run `fn(...)` as a task of the runtime that called `loom.to_thread` and
---return its results (blocks this worker thread).
---@param fn function|string a function (only upvalue: _ENV) or "module.func"
---@param ... any copied values
---@return any ...
function thread.run_sync(fn, ...) end

---@class loom.ThreadOptions
---@field abandon_on_cancel? boolean leave at once when cancelled
---@field limiter? loom.CapacityLimiter the limiter whose token the call holds

---@type loom.ThreadError
loom.ThreadError = nil

---Functions for code running in a worker thread.
---@type loom.thread
loom.thread = thread

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
