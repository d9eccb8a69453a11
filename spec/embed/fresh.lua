-- spec/embed/fresh.lua: run a Lua snippet in a fresh lua5.4 process, for
-- the specs of the host-driven runtime. loom.configure is refused once a
-- state has run tasks (and busted runs every spec in one state), so each
-- configured scenario gets its own process, under the same build and memory
-- checker as the suite (LOOM_BUILD_DIR, LOOM_TEST_PREFIX).
--
--   local fresh = require("embed.fresh")
--   local out, err, code = fresh.run([[ print(loom.frame()) ]])
--
-- The snippet starts with `local loom = require("loom")` already done.

local M = {}

local here = debug.getinfo(1, "S").source:gsub("^@", "")
local root = here:gsub("/?spec/embed/fresh%.lua$", "")
if root == "" then root = "." end
M.root = root

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
M.quote = q

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

--- run(code) -> stdout, stderr, exit status of `lua5.4` running code.
function M.run(code)
  local src, errf = os.tmpname(), os.tmpname()
  local f = assert(io.open(src, "wb"))
  f:write('local loom = require("loom")\n', code)
  f:close()
  local build = os.getenv("LOOM_BUILD_DIR") or "build"
  local prefix = os.getenv("LOOM_TEST_PREFIX") or ""
  local cmd = table.concat({
    "cd", q(root), "&&",
    "env LUA_PATH='./lua/?.lua;./lua/?/init.lua;./spec/?.lua;;'",
    "LUA_CPATH=" .. q("./" .. build .. "/?.so;;"),
    "timeout 120", prefix, "lua5.4", q(src), "2>" .. q(errf),
  }, " ")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, status = p:close()
  local err = slurp(errf)
  os.remove(src)
  os.remove(errf)
  return out, err, status
end

--- ok(code) -> stdout; fails (with stderr) unless the process exits 0
--- with nothing on stderr.
function M.ok(code)
  local out, err, status = M.run(code)
  if status ~= 0 or err ~= "" then
    error(("fresh process failed (status %s):\nstdout:\n%s\nstderr:\n%s")
      :format(tostring(status), out, err), 2)
  end
  return out
end

return M
