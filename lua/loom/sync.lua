-- loom.sync: the Lua side of the synchronisation primitives. Everything that
-- waits lives in C (csrc/sync.c, csrc/channel.c); this adds the one method
-- that calls back into user code on every round, Condition:wait_for.

local core = require("loom.core")

local condition_methods = core.condition_methods

--- cond:wait_for(predicate) -> the predicate's first truthy result. Waits
--- (cond:wait()) until predicate() is truthy; the lock must be held. Like
--- AnyIO, a predicate that is already true returns at once without waiting.
local cond_mt = debug.getregistry()["loom.Condition"]

function condition_methods.wait_for(cond, predicate)
  if getmetatable(cond) ~= cond_mt then
    local mt, got = getmetatable(cond), cond == nil and "no value"
      or type(cond)
    if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then
      got = rawget(mt, "__name")
    end
    error("calling 'wait_for' on bad self (loom.Condition expected, got "
      .. got .. ")", 2)
  end
  if type(predicate) ~= "function" then
    local mt = getmetatable(predicate)
    if type(mt) ~= "table" or mt.__call == nil then
      error("bad argument #1 to 'wait_for' (function expected, got "
        .. type(predicate) .. ")", 2)
    end
  end
  local result = predicate()
  while not result do
    cond:wait()
    result = predicate()
  end
  return result
end

return {}
