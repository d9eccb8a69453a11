-- loom.embed: the host-driven runtime's Lua names (the work is in C:
-- sched.c, embed.c, hostgroup.c, future.c). A host that owns its frame loop
-- configures the clock and the error hook, opens host groups and calls
-- loom.step once per frame.

local M = {}

--- install(loom, core, errors): export the embedding API into `loom`.
function M.install(loom, core, errors)
  loom.configure = core.configure
  loom.step = core.step
  loom.frame = core.frame
  loom.next_frame = core.next_frame
  loom.advance = core.advance
  loom.host_group = core.host_group
  loom.future = core.future
  -- A fail-fast host group reports one ErrorGroup of its children's errors.
  core.set_error_group(function(errs, tbs)
    return errors.ErrorGroup.new(errors.ErrorGroup.default_message, errs, tbs)
  end)
end

return M
