-- loom.args: the argument checks the Lua front shares (internal; not part
-- of require("loom")). Every check raises a lauxlib-style message,
-- "bad argument #n to 'fname' (...)". `level` counts as error's does from
-- the function calling the check: argerror(n, fname, msg, 2) blames the
-- caller of that function, exactly as if the check were written in place.

local M = {}

--- Raise "bad argument #n to 'fname' (msg)" blaming `level` (default 2:
--- the caller of the function that calls argerror).
function M.argerror(n, fname, msg, level)
  error(("bad argument #%d to '%s' (%s)"):format(n, fname, msg),
    (level or 2) + 1)
end

--- The type name lauxlib prints for a missing or given argument.
function M.tname(v)
  return v == nil and "no value" or type(v)
end

--- A function, or a value whose metatable has __call.
function M.callable(v)
  if type(v) == "function" then return true end
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__call ~= nil
end

--- Argument n of fname must be a string; blames the caller of the function
--- that calls check_string. Returns v.
function M.check_string(v, n, fname)
  if type(v) ~= "string" then
    M.argerror(n, fname, "string expected, got " .. M.tname(v), 3)
  end
  return v
end

return M
