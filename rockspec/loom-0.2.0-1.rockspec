rockspec_format = "3.0"
package = "loom"
version = "0.2.0-1"
source = {
  url = "git+https://github.com/loom-lua/loom.git",
  tag = "v0.2.0",
}
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
  homepage = "https://github.com/loom-lua/loom",
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
