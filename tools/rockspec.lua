-- tools/rockspec.lua: writes loom's rockspecs from one template, so the scm
-- and the versioned rockspec cannot drift apart.
-- luacheck: no max line length (the rockspec text below is written as is)
--
--   lua5.4 tools/rockspec.lua VERSION URL REF OUTDIR
--
-- VERSION is "0.2.0" (writes loom-0.2.0-1.rockspec) or "scm" (writes
-- loom-scm-1.rockspec). REF is what luarocks checks out (source.tag: a tag
-- for a release, the development branch for scm; git clones either). URL
-- is the git repository luarocks clones (git+https://..., git+file:///...).
local version, url, ref, outdir = ...
if not (version and url and ref and outdir) then
  io.stderr:write("usage: lua5.4 tools/rockspec.lua VERSION URL REF OUTDIR\n")
  os.exit(2)
end

local homepage = os.getenv("LOOM_HOMEPAGE")
if homepage == nil or homepage == "" then
  homepage = url:gsub("^git%+", ""):gsub("%.git$", "")
end

local scm = version == "scm"
local rock_version = version .. "-1"
local source
if scm then
  source = ("source = {\n  url = %q,\n  -- the development branch\n"
    .. "  tag = %q,\n}"):format(url, ref)
else
  source = ("source = {\n  url = %q,\n  tag = %q,\n}"):format(url, ref)
end

local text = ([[
rockspec_format = "3.0"
package = "loom"
version = "%s"
%s
description = {
  summary = "Structured concurrency for Lua 5.4 on libuv (task groups, cancel scopes)",
  detailed = [==[
loom runs Lua coroutines as tasks on a libuv loop with AnyIO/Trio semantics:
task groups that own their children, error groups, cancel scopes with
deadlines and shields, task handles, start/started, synchronisation
primitives, channels, TCP, UDP, TLS (OpenSSL), Unix sockets, files,
subprocesses, signals, fd readiness, worker threads, and a host-driven mode
for game engines. The reference (docs/api.md) and LuaLS type stubs (types/)
are installed with the rock.]==],
  homepage = %q,
  license = "MIT",
  labels = { "concurrency", "async", "coroutines", "libuv", "networking" },
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = { LIBUV = { header = "uv.h" },
                          OPENSSL = { header = "openssl/ssl.h" } }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    LOOM_INSTALL_HEADER = "OFF",
    LOOM_LIBRARY = "OFF",
    LOOM_BUILD_EXAMPLES = "OFF",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
  copy_directories = { "docs", "types" },
}
]]):format(rock_version, source, homepage)

local path = ("%s/loom-%s.rockspec"):format(outdir, rock_version)
local f = assert(io.open(path, "w"))
f:write(text)
f:close()
print(path)
