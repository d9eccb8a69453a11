-- Runs every examples/*.lua as its own process (lua5.4, from the repo root,
-- with LUA_PATH/LUA_CPATH pointing at ./lua and ./build) and checks that it
-- exits with status 0 and, when examples/expected/<name>.txt exists, that
-- its stdout is exactly that file. LOOM_EXAMPLE_FAST=1 lets examples shorten
-- their sleeps; their output must be the same either way.

-- The repo root: the directory above this spec file.
local here = debug.getinfo(1, "S").source:gsub("^@", "")
local root = here:gsub("/?spec/examples_spec%.lua$", "")
if root == "" then root = "." end

-- Examples whose output is wrong today because of a core bug: a mismatch
-- makes the test pending (with this note) instead of failing. Delete the
-- entry once the bug is fixed.
local known_core_bugs = {}

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function list_examples()
  local names = {}
  local p = assert(io.popen("cd " .. shell_quote(root)
                            .. " && ls examples/*.lua 2>/dev/null"))
  for line in p:lines() do
    local name = line:match("^examples/(.+)%.lua$")
    -- The script of a C host (examples/<name>.c) runs inside that host:
    -- spec/examples_c_spec.lua checks it.
    local c = io.open(root .. "/examples/" .. name .. ".c")
    if c then c:close() else names[#names + 1] = name end
  end
  p:close()
  table.sort(names)
  return names
end

-- The build under test and the command prefix of the memory checks: `make
-- asan` sets LOOM_BUILD_DIR, `make valgrind` and `make asan` set
-- LOOM_TEST_PREFIX, so that the examples run under the same checks.
local build_dir = os.getenv("LOOM_BUILD_DIR") or "build"
local prefix = os.getenv("LOOM_TEST_PREFIX") or ""

-- Examples that talk to a peer: a function that starts it and returns
-- environment assignments for the example and a function that stops it.
local peers = {
  https_get = function()
    package.path = root .. "/spec/?.lua;" .. package.path
    local c = require("tls_certs").make()
    local p = assert(io.popen("python3 " .. shell_quote(root
      .. "/spec/peers/https_server.py") .. " " .. shell_quote(c.server_cert)
      .. " " .. shell_quote(c.server_key)))
    local port = assert(tonumber(p:read("l")), "https server did not start")
    return ("LOOM_HTTPS_URL=https://localhost:%d/hello.txt "
      .. "LOOM_HTTPS_CAFILE=%s"):format(port, shell_quote(c.ca)),
      function()
        p:close()
        require("tls_certs").cleanup()
      end
  end,
}

-- Run examples/<name>.lua; returns stdout, stderr, exit code.
local function run_example(name)
  local err_path = os.tmpname()
  local env, stop = "", nil
  if peers[name] then env, stop = peers[name]() end
  local cmd = table.concat({
    "cd", shell_quote(root), "&&",
    "env", env, "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;'",
    "LUA_CPATH=" .. shell_quote("./" .. build_dir .. "/?.so;;"),
    "LOOM_EXAMPLE_FAST=1",
    "timeout 300", prefix, "lua5.4", shell_quote("examples/" .. name .. ".lua"),
    "2>" .. shell_quote(err_path),
  }, " ")
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  if stop then stop() end
  local err = read_file(err_path) or ""
  os.remove(err_path)
  return out, err, code
end

describe("examples", function()
  local names = list_examples()

  it("are found", function()
    assert.is_true(#names > 0)
  end)

  for _, name in ipairs(names) do
    it(name .. ".lua runs and prints what it should", function()
      local out, err, code = run_example(name)
      assert(code == 0, ("examples/%s.lua exited with %s\nstdout:\n%s\n"
                         .. "stderr:\n%s"):format(name, tostring(code), out, err))
      local expected = read_file(root .. "/examples/expected/" .. name .. ".txt")
      if expected == nil then return end
      if out ~= expected and known_core_bugs[name] then
        pending(known_core_bugs[name])
        return
      end
      assert.are.equal(expected, out)
    end)
  end
end)
