rockspec_format = "3.0"
package = "loom"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "Structured concurrency for Lua 5.4 on libuv (task groups, cancel scopes)",
  detailed = [[
loom runs Lua coroutines as tasks on a libuv loop with AnyIO/Trio semantics:
task groups that own their children, error groups, cancel scopes with
deadlines and shields, task handles, start/started, synchronisation
primitives, channels and TCP.]],
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = { LIBUV = { header = "uv.h" } }
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    LOOM_INSTALL_HEADER = "OFF",
    LOOM_LIBRARY = "OFF",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
  },
}
