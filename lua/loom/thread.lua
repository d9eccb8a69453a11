-- loom.thread: worker threads (csrc/thread.c does the threads, the copying
-- and the waiting). This file holds what runs once per call: the argument
-- checks of loom.to_thread / loom.to_thread_with, the capacity limiter
-- token, building loom.ThreadError, and serving loom.thread.run_sync
-- requests of a worker as tasks under the calling task.

local M = {}
-- a re-raise keeps the traceback of the first raise
local rethrow = require("loom.core").rethrow

local pack, unpack = table.pack, table.unpack

function M.install(loom, core, errors)
  local thread_new, thread_submit = core.thread_new, core.thread_submit
  local thread_wait = core.thread_wait
  local request_unpack, thread_reply = core.thread_request_unpack,
    core.thread_reply
  local is_cancelled = errors.is_cancelled
  local msgh = core.msgh

  local ThreadError = errors.error_class("ThreadError", errors.Error)
  loom.ThreadError = ThreadError

  --- loom.current_default_thread_limiter() -> the CapacityLimiter (40
  --- tokens) that bounds loom.to_thread calls of this runtime.
  local default_limiter
  local function current_default_thread_limiter()
    if default_limiter == nil then
      default_limiter = core.capacity_limiter(40)
    end
    return default_limiter
  end
  loom.current_default_thread_limiter = current_default_thread_limiter

  local limiter_mt = getmetatable(core.capacity_limiter(1))

  -- A worker failed: its error as a ThreadError, or the caller's own
  -- Cancelled when the worker gave up because the caller was cancelled.
  local function fail(cause, text, traceback, cancelled)
    if cancelled then core.checkpoint_if_cancelled() end
    error(ThreadError(text, { cause = cause, traceback = traceback }), 0)
  end

  -- Serving loom.thread.run_sync: the request's function runs as a task in
  -- a task group opened by the caller (so under the caller's cancel
  -- scopes) and its outcome goes back to the worker.
  local function apply(f, ...) return f(...) end
  local function call_request(req) return apply(request_unpack(req)) end

  local function serve(req)
    local function answer(ok, ...)
      if ok then return thread_reply(req, true, ...) end
      local e = ...
      return thread_reply(req, false, e, is_cancelled(e))
    end
    answer(xpcall(call_request, msgh, req))
  end

  local finish

  local function serve_loop(call, req)
    local r
    loom.task_group(function(tg)
      while true do
        if req ~= nil then
          local h = tg:start_soon(serve, req)
          h.name = "loom.thread.run_sync"
          req = nil
        end
        r = pack(thread_wait(call))
        if r[1] ~= nil then return end
        req = r[2]
      end
    end)
    return finish(call, unpack(r, 1, r.n))
  end

  -- thread_wait's answer: true, results... | false, failure... |
  -- nil, request.
  finish = function(call, ok, ...)
    if ok then return ... end
    if ok == nil then return serve_loop(call, ...) end
    return fail(...)
  end

  -- Called in tail position by the public functions, so that level 2 is
  -- their caller.
  local function run(fname, base, abandon, limiter, ...)
    local call, msg, argn = thread_new(fname, base, ...)
    if call == nil then
      error(("bad argument #%d to '%s' (%s)"):format(argn, fname, msg), 2)
    end
    -- thread_new was the cancel point; waiting for the worker yields, so
    -- an uncontended token is taken without the limiter's own yield.
    if not pcall(limiter.acquire_on_behalf_of_nowait, limiter, call) then
      limiter:acquire_on_behalf_of(call)
    end
    local ok, err = pcall(thread_submit, call, limiter, abandon)
    if not ok then
      limiter:release_on_behalf_of(call)
      rethrow(err)
    end
    return finish(call, thread_wait(call))
  end

  --- loom.to_thread(fn, ...) -> fn(...)'s results, computed in a worker
  --- thread.
  function loom.to_thread(...)
    return run("to_thread", 1, false, current_default_thread_limiter(), ...)
  end

  local options = { abandon_on_cancel = true, limiter = true }

  --- loom.to_thread_with({abandon_on_cancel=, limiter=}, fn, ...)
  function loom.to_thread_with(opts, ...)
    if type(opts) ~= "table" then
      error(("bad argument #1 to 'to_thread_with' (table expected, got %s)")
        :format(opts == nil and "no value" or type(opts)), 2)
    end
    for k in pairs(opts) do
      if not options[k] then
        error(("bad argument #1 to 'to_thread_with' (unknown option '%s')")
          :format(tostring(k)), 2)
      end
    end
    local abandon, limiter = opts.abandon_on_cancel, opts.limiter
    if abandon ~= nil and type(abandon) ~= "boolean" then
      error(("bad argument #1 to 'to_thread_with' (abandon_on_cancel must "
        .. "be a boolean, got %s)"):format(type(abandon)), 2)
    end
    if limiter == nil then
      limiter = current_default_thread_limiter()
    elseif getmetatable(limiter) ~= limiter_mt then
      error(("bad argument #1 to 'to_thread_with' (limiter must be a "
        .. "loom.CapacityLimiter, got %s)"):format(type(limiter)), 2)
    end
    return run("to_thread_with", 2, abandon == true, limiter, ...)
  end

  -- Inside a worker thread (they raise elsewhere).
  loom.thread = {
    check_cancelled = core.thread_check_cancelled,
    run_sync = core.thread_run_sync,
  }
end

return M
