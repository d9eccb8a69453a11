---@meta
-- LuaLS stubs for the host-driven runtime (docs/embedding.md).

---@class loom.HostGroup
---@field name string the name given to loom.host_group
---@field cancel_scope loom.CancelScope the group's cancel scope
local HostGroup = {}

---Spawn fn(...) in the group; it runs from the next step.
---@param fn function
---@param ... any
---@return loom.Task
function HostGroup:start_soon(fn, ...) end

---Spawn fn(...) in the group and return its handle.
---@param fn function
---@param ... any
---@return loom.Task
function HostGroup:create_task(fn, ...) end

---Cancel every task of the group.
---@param reason? string
function HostGroup:cancel(reason) end

---Children not finished yet (started or not).
---@return integer
function HostGroup:alive() end

---Cancel the group and settle it (at most `grace` seconds of passes).
---@param grace? number seconds of wall time, default 0 (one pass)
---@return boolean done true when no task of the group is left
function HostGroup:close(grace) end

---@class loom.Future
local Future = {}

---Resolve with values; raises if already resolved.
---@param ... any
function Future:set(...) end

---Resolve with an error; raises if already resolved.
---@param err any
function Future:fail(err) end

---Wait for the values (or raise the error); a checkpoint.
---@async
---@return any ...
function Future:wait() end

---@return boolean resolved
function Future:done() end

---@class loom.ConfigureOptions
---@field clock? "real"|"manual"|"autojump"|fun(): number
---@field on_error? "print"|"raise"|fun(err: any, task: loom.Task|nil, traceback: string|nil)

---@class loom.HostGroupOptions
---@field fail_fast? boolean

---Configure the clock and error hook before any task ran.
---@param opts loom.ConfigureOptions
function loom.configure(opts) end

---Run one bounded slice of the runtime without blocking.
---@param budget? number seconds of wall time (nil or 0: no limit)
---@param max_resumes? integer (nil or 0: no limit)
---@return integer ready_left
---@return number|nil next_deadline
function loom.step(budget, max_resumes) end

---Steps (or loom.run passes) begun so far.
---@return integer
function loom.frame() end

---Park until n later frames have begun (default 1).
---@async
---@param n? integer
function loom.next_frame(n) end

---Move a manual clock forward.
---@param dt number seconds, finite, >= 0
function loom.advance(dt) end

---A task group owned by the host.
---@param name string
---@param opts? loom.HostGroupOptions
---@return loom.HostGroup
function loom.host_group(name, opts) end

---A one-shot value resolved by the host or a task.
---@return loom.Future
function loom.future() end
