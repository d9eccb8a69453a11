-- Regression: an object created before require("loom") is finalised after
-- the runtime at lua_close; its __gc calling loom.run (or creating a TCP
-- listener, or a signal receiver) used libuv's closed loop and crashed.
-- Every entry point now checks that the runtime is closed and raises a
-- clear error.

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
  try("step", loom.step)
  try("host_group", loom.host_group, "late")
  try("future", loom.future)
  try("configure", loom.configure, { clock = "manual" })
  try("run_process", loom.run_process, { "true" })
  try("open_process", loom.open_process, { "true" })
  try("connect_unix", loom.connect_unix, "/nonexistent/loom.sock")
  try("create_unix_listener", loom.create_unix_listener,
    { path = "/nonexistent/loom.sock" })
  try("open_signal_receiver", loom.open_signal_receiver, "SIGUSR1")
  try("stdin", loom.stdin)
  try("stdout", loom.stdout)
  try("stderr", loom.stderr)
  try("next_frame", loom.next_frame)
  try("now", loom.now)
  try("to_thread", loom.to_thread, function() end)
  try("open_file", loom.open_file, "/dev/null")
  try("wait_readable", loom.wait_readable, 0)
  -- Every module function, without arguments: an error, never a crash.
  for k, v in pairs(loom) do
    if type(v) == "function" then pcall(v) end
  end
  io.stdout:write("every function: ok\n")
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

-- sh(cmd) -> output (stdout and stderr), exit code
local sh = require("chost").sh

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
    local closed = "the runtime is closed"
    for _, name in ipairs({ "run", "sleep", "getaddrinfo", "step",
      "host_group", "future", "configure", "run_process", "open_process",
      "connect_unix", "create_unix_listener", "open_signal_receiver",
      "stdin", "stdout", "stderr", "next_frame", "to_thread", "open_file",
      "wait_readable" }) do
      assert.truthy(("\n" .. out):find(("\n%s: loom.%s: %s\n"):format(name, name,
        closed), 1, true), name .. "\n" .. out)
    end
    assert.truthy(out:find("listener: [^\n]*loom.create_tcp_listener: "
      .. closed), out)
    assert.truthy(out:find("now: ok", 1, true), out)
    assert.truthy(out:find("every function: ok", 1, true), out)
    assert.truthy(out:find("event: ok", 1, true), out)
    assert.truthy(out:find("getaddrinfo: loom.getaddrinfo: " .. closed, 1,
      true), out)
    assert.truthy(out:find("local_address: [^\n]*bad self", 1), out)
    assert.truthy(out:find("set: ok", 1, true), out)
    assert.truthy(out:find("tcp_stats: ok", 1, true), out)
    assert.truthy(out:find("task_tree: ok", 1, true), out)
  end)
end)
