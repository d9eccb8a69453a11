-- libloom: `cmake --install` gives a host everything it needs to embed
-- loom with no Lua file on disk (libloom.a/.so with the Lua front inside,
-- loom.h, loom.pc), and loom.h compiles cleanly as C and as C++.
local C = require("chost")
local q = C.quote

local function modules_on_disk()
  local names = {}
  local p = assert(io.popen("cd " .. q(C.root .. "/lua")
                            .. " && find loom -name '*.lua' | sort"))
  for rel in p:lines() do
    local mod = rel:gsub("%.lua$", ""):gsub("/", "."):gsub("%.init$", "")
    names[#names + 1] = mod
  end
  p:close()
  return names
end

describe("libloom", function()
  local tmp = os.tmpname()
  local prefix = tmp .. ".d"
  local pc = "PKG_CONFIG_PATH=" .. q(prefix .. "/lib/pkgconfig")

  lazy_setup(function()
    os.remove(tmp)
    local out, code = C.sh(("cmake --install %s --prefix %s"):format(
      q(C.build), q(prefix)))
    assert.are.equal(0, code, out)
  end)

  lazy_teardown(function()
    C.sh("rm -rf " .. q(prefix))
  end)

  it("installs the libraries, loom.h and loom.pc", function()
    for _, f in ipairs({ "lib/libloom.a", "lib/libloom.so",
        "lib/pkgconfig/loom.pc", "include/loom.h" }) do
      local h = io.open(prefix .. "/" .. f, "rb")
      assert(h, "missing " .. f)
      h:close()
    end
    local out, code = C.sh(pc .. " pkg-config --modversion loom")
    assert.are.equal(0, code, out)
    local hdr = assert(io.open(C.root .. "/csrc/loom.h")):read("a")
    assert.are.equal(hdr:match('#define LOOM_VERSION "([%d.]+)"') .. "\n",
                     out)
    out = C.sh(pc .. " pkg-config --print-requires loom")
    assert.are.equal("libuv\n", out)
  end)

  it("never links liblua: the host provides it", function()
    local out = C.sh("readelf -d " .. q(prefix .. "/lib/libloom.so"))
    assert.truthy(out:find("libuv", 1, true), out)
    assert.falsy(out:find("liblua", 1, true), out)
    out = C.sh("nm -D --undefined-only " .. q(prefix .. "/lib/libloom.so"))
    assert.truthy(out:find(" lua_resume", 1, true), out)
    out = C.sh("readelf -d " .. q(C.build .. "/loom/core.so"))
    assert.falsy(out:find("liblua", 1, true), out)
  end)

  local names = modules_on_disk()
  local expected = table.concat({
    "preloaded " .. #names .. " modules and loom.core",
    "version " .. (io.open(C.root .. "/csrc/loom.h"):read("a")
                   :match('#define LOOM_VERSION "([%d.]+)"')),
    "task_tree where host:14",
    "error host:33: first",
    "traceback from host:33 true",
    "" }, "\n")

  -- Run the host from an empty directory with Lua's search paths pointing
  -- nowhere: everything must come from the library.
  local function run_host(bin, env)
    local dir = tmp .. ".run"
    C.sh("mkdir -p " .. q(dir))
    local args = {}
    for i, n in ipairs(names) do args[i] = q(n) end
    local out, err, code = C.sh3(("cd %s && env LUA_PATH=/nonexistent/?.lua "
      .. "LUA_CPATH=/nonexistent/?.so %s timeout 60 %s %s %s"):format(
      q(dir), env or "", C.prefix, q(bin), table.concat(args, " ")))
    C.sh("rm -rf " .. q(dir))
    return out, err, code
  end

  it("builds a host with pkg-config and runs it with no Lua file on disk",
     function()
    local bin = tmp .. ".host"
    local out, code = C.sh(("cc %s -o %s %s $(%s pkg-config --cflags --libs "
      .. "loom lua5.4)"):format(C.san_flags(), q(bin),
      q(C.root .. "/spec/embed/preload_host.c"), pc))
    assert.are.equal(0, code, out)
    local err
    out, err, code = run_host(bin, "LD_LIBRARY_PATH="
                              .. q(prefix .. "/lib"))
    os.remove(bin)
    assert.are.equal(0, code, err)
    assert.are.equal(expected, out)
  end)

  it("links statically too", function()
    local bin = tmp .. ".static"
    local out, code = C.sh(("cc %s -o %s %s $(%s pkg-config --cflags loom "
      .. "lua5.4) %s $(%s pkg-config --static --libs libuv openssl lua5.4) -lm")
      :format(C.san_flags(), q(bin),
      q(C.root .. "/spec/embed/preload_host.c"), pc,
      q(prefix .. "/lib/libloom.a"), pc))
    assert.are.equal(0, code, out)
    out = C.sh("readelf -d " .. q(bin))
    assert.falsy(out:find("libloom", 1, true), out)
    local err
    out, err, code = run_host(bin)
    os.remove(bin)
    assert.are.equal(0, code, err)
    assert.are.equal(expected, out)
  end)

  local probe = table.concat({
    "#include <loom.h>",
    "static int wake_n;",
    "static void wake(void *ud) { (void)ud; wake_n++; }",
    "int main(void) {",
    "  loom_config cfg = {sizeof(loom_config), LOOM_CLOCK_MANUAL, 0, 0, 0,",
    "                     0, wake, 0, 0};",
    "  int (*step)(lua_State *, double, int, int *) = loom_step;",
    "  loom_remote *(*open)(lua_State *) = loom_remote_open;",
    "  (void)step; (void)open;",
    "  return cfg.clock == LOOM_CLOCK_MANUAL && LOOM_VERSION_NUM >= 200",
    "         && LOOM_ECLOSED > LOOM_OK ? 0 : 1;",
    "}", "" }, "\n")

  for _, lang in ipairs({ { "C", "cc -std=c99 -pedantic", "c" },
                          { "C++", "g++ -std=c++11 -pedantic", "c++" } }) do
    it("loom.h compiles cleanly as " .. lang[1], function()
      local src = tmp .. ".probe"
      local f = assert(io.open(src, "w"))
      f:write(probe)
      f:close()
      local out, code = C.sh(("%s -Wall -Wextra -Werror -x %s -c -o %s "
        .. "%s $(%s pkg-config --cflags loom lua5.4)"):format(lang[2],
        lang[3], q(src .. ".o"), q(src), pc))
      os.remove(src)
      os.remove(src .. ".o")
      assert.are.equal(0, code, out)
      assert.are.equal("", out)
    end)
  end
end)
