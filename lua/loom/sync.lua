-- loom.sync: the Lua side of the synchronisation primitives. Everything that
-- waits lives in C (csrc/sync.c, csrc/channel.c); this adds the one method
-- that calls back into user code on every round, Condition:wait_for.

local core = require("loom.core")
local args = require("loom.args")

local condition_methods = core.condition_methods

--- cond:wait_for(predicate) -> the predicate's first truthy result. Waits
--- (cond:wait()) until predicate() is truthy; the lock must be held. Like
--- AnyIO, a predicate that is already true returns at once without waiting.
local cond_mt = debug.getregistry()["loom.Condition"]

function condition_methods.wait_for(cond, predicate)
  if getmetatable(cond) ~= cond_mt then
    args.selferror("wait_for", "loom.Condition", args.named_type(cond))
  end
  if not args.callable(predicate) then
    args.argerror(1, "wait_for", "function expected, got " .. type(predicate))
  end
  local result = predicate()
  while not result do
    cond:wait()
    result = predicate()
  end
  return result
end

return {}
