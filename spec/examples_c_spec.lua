-- The C host examples (examples/*.c, built by CMake into build/hosts/):
-- each runs to the end and prints exactly examples/expected/<name>.txt.
-- host_60fps's transcript depends only on frames and game time: two runs
-- print the same bytes. Under `make valgrind` / `make asan` the hosts run
-- under the same checker (LOOM_TEST_PREFIX).
local C = require("chost")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function run(name, args, env)
  local out, err, code = C.sh3(("cd %s && %s timeout 300 %s %s %s"):format(
    C.quote(C.root), env or "", C.prefix, C.quote(C.host(name)), args or ""))
  assert(code == 0, ("%s exited with %s\nstdout:\n%s\nstderr:\n%s")
    :format(name, tostring(code), out, err))
  return out, err
end

describe("C host examples", function()
  it("host_60fps: the same transcript on every run", function()
    local expected = read(C.root .. "/examples/expected/host_60fps.txt")
    local first = run("host_60fps", "examples/host_60fps.lua")
    assert.are.equal(expected, first)
    local second = run("host_60fps", "examples/host_60fps.lua")
    assert.are.equal(first, second)
  end)

  it("host_60fps.lua alone only defines the game", function()
    -- Under make tsan loom.core is instrumented: the plain interpreter
    -- needs the TSan runtime preloaded (LOOM_CHILD_PREFIX).
    local out, err, code = C.sh3(("cd %s && %s env LUA_PATH='./lua/?.lua;"
      .. "./lua/?/init.lua;;' LUA_CPATH=%s lua5.4 examples/host_60fps.lua")
      :format(C.quote(C.root), os.getenv("LOOM_CHILD_PREFIX") or "",
        C.quote(C.build .. "/?.so;;")))
    assert.are.equal(0, code, err)
    assert.are.equal("", out)
  end)

  it("uv_host: loom on the host's own libuv loop, no loom_step", function()
    assert.are.equal(read(C.root .. "/examples/expected/uv_host.txt"),
                     run("uv_host"))
  end)

  it("sdl_host: loom inside an SDL2 event loop (dummy video driver)",
     function()
    assert.are.equal(read(C.root .. "/examples/expected/sdl_host.txt"),
                     run("sdl_host", "", "SDL_VIDEODRIVER=dummy"))
  end)
end)
