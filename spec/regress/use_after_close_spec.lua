-- Regression: an object created before require("loom") is finalised after
-- the runtime at lua_close; its __gc calling loom.run (or creating a TCP
-- listener) used libuv's closed loop and crashed. Every entry point now
-- checks that the runtime is closed and raises a clear error.

local script = [[
local loom
local keep = {}
local g = setmetatable({}, { __gc = function()
  local function try(name, f, ...)
    local ok, err = pcall(f, ...)
    io.stdout:write(name, ": ", ok and "ok" or tostring(err), "\n")
  end
  try("run", loom.run, function() loom.sleep(0.001) end)
  try("listener", loom.create_tcp_listener, { local_host = "127.0.0.1" })
  try("sleep", loom.sleep, 0)
  try("event", function() local e = loom.event(); e:set() end)
  try("getaddrinfo", loom.getaddrinfo, "localhost", 80)
  -- Objects of the last run, used after the runtime was finalised.
  try("local_address", function() return keep.l:local_address() end)
  try("close", function() keep.c:close() end)
  try("set", function() keep.ev:set() end)
  try("tcp_stats", require("loom.core").tcp_stats)
  try("task_tree", function() return tostring(loom.task_tree()) end)
  io.stdout:flush()
end })
loom = require("loom")
loom.run(function()
  keep.l = loom.create_tcp_listener{ local_host = "127.0.0.1" }
  local _, port = keep.l:local_address()
  keep.c = loom.connect_tcp("127.0.0.1", port)
  keep.ev = loom.event()
end)
]]

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

describe("regression: use after the runtime was finalised", function()
  it("raises a clear error instead of touching libuv", function()
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(script)
    f:close()
    local prefix = os.getenv("LOOM_TEST_PREFIX") or ""
    local out, code = sh(("%s lua5.4 %s"):format(prefix, file))
    os.remove(file)
    assert.equal(0, code, out)
    local closed = "the loom runtime is closed (its Lua state is being "
      .. "closed)"
    assert.truthy(out:find("run: loom.run: " .. closed, 1, true), out)
    assert.truthy(out:find("listener: [^\n]*loom.create_tcp_listener: "
      .. closed:gsub("%p", "%%%0")), out)
    assert.truthy(out:find("sleep: loom.sleep: " .. closed, 1, true), out)
    assert.truthy(out:find("event: ok", 1, true), out)
    assert.truthy(out:find("getaddrinfo: loom.getaddrinfo: " .. closed, 1,
      true), out)
    assert.truthy(out:find("local_address: [^\n]*bad self", 1), out)
    assert.truthy(out:find("set: ok", 1, true), out)
    assert.truthy(out:find("tcp_stats: ok", 1, true), out)
    assert.truthy(out:find("task_tree: ok", 1, true), out)
  end)
end)
