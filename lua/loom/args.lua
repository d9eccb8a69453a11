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

--- The type name for a "bad self" message: the metatable's __name when it
--- has one (as luaL_typeerror prints), else tname(v).
function M.named_type(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(rawget(mt, "__name")) == "string" then
    return rawget(mt, "__name")
  end
  return M.tname(v)
end

--- Raise "calling 'fname' on bad self (class expected, got got)", blaming
--- `level` counted as error's from the caller (default 2).
function M.selferror(fname, class, got, level)
  error(("calling '%s' on bad self (%s expected, got %s)")
    :format(fname, class, got), (level or 2) + 1)
end

--- Argument n of fname must be a port number, an integer (or an integral
--- float) in min..65535; `what` names it in the message ("port",
--- "local_port"). Blames the caller of the function that calls check_port.
--- Returns the port as an integer.
function M.check_port(v, n, fname, what, min)
  local p = math.type(v) == "float" and math.tointeger(v) or v
  if math.type(p) ~= "integer" then
    M.argerror(n, fname, what .. " must be an integer, got "
      .. (type(v) == "number" and tostring(v) or M.tname(v)), 3)
  end
  if p < min or p > 65535 then
    M.argerror(n, fname, ("%s must be in %d..65535, got %d"):format(what, min,
      p), 3)
  end
  return p
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
