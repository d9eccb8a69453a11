-- spec/chost.lua: running C hosts from specs.
--
--   local C = require("chost")
--   C.root                      the repository root (absolute)
--   C.build                     the build under test (absolute; LOOM_BUILD_DIR)
--   C.prefix                    the memory checker prefix (LOOM_TEST_PREFIX)
--   C.sh(cmd) -> out, code      run a shell command, stdout+stderr together
--   C.sh3(cmd) -> out, err, code  same with stderr apart
--   C.host(name) -> path        a host built by CMake (build/hosts/<name>)
--   C.san_flags() -> string     compiler flags matching the build's sanitizer
--   C.quote(s)                  shell quoting

local C = {}

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end
C.sh = sh

function C.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function C.sh3(cmd)
  local err_path = os.tmpname()
  local p = assert(io.popen(cmd .. " 2>" .. C.quote(err_path)))
  local out = p:read("a")
  local _, _, code = p:close()
  local f = assert(io.open(err_path, "rb"))
  local err = f:read("a")
  f:close()
  os.remove(err_path)
  return out, err, code
end

local here = debug.getinfo(1, "S").source:gsub("^@", "")
local root = here:gsub("/?spec/chost%.lua$", "")
if root == "" or root:sub(1, 1) ~= "/" then
  root = (sh("pwd"):gsub("%s+$", "")) .. (root == "" and "" or "/" .. root)
end
C.root = root

local build = os.getenv("LOOM_BUILD_DIR") or "build"
if build:sub(1, 1) ~= "/" then build = root .. "/" .. build end
C.build = build
C.prefix = os.getenv("LOOM_TEST_PREFIX") or ""

--- C.host(name) -> absolute path of build/hosts/<name>, or fails the test
--- when the build did not make it (LOOM_BUILD_EXAMPLES off).
function C.host(name)
  local path = build .. "/hosts/" .. name
  local f = io.open(path, "rb")
  if not f then error("C host not built: " .. path, 2) end
  f:close()
  return path
end

--- C.san_flags() -> "-fsanitize=..." when the build under test is
--- instrumented (a host linked against its libloom needs the same runtime).
function C.san_flags()
  local f = io.open(build .. "/CMakeCache.txt", "r")
  if not f then return "" end
  local cache = f:read("a")
  f:close()
  if cache:find("LOOM_SANITIZE:BOOL=ON", 1, true) then
    return "-fsanitize=address,undefined"
  elseif cache:find("LOOM_TSAN:BOOL=ON", 1, true) then
    return "-fsanitize=thread"
  end
  return ""
end

return C
