-- luacheck configuration: `make lint` runs
--   luacheck --codes lua spec examples bench
-- Lua 5.4 only (no 5.1/LuaJIT globals). The library and the examples keep
-- to the 80 columns of the style guide; specs and benchmarks may run to 120
-- (long test names, tables of expected output, peer-runtime code).
std = "lua54"
max_line_length = 80

files["spec"] = { max_line_length = 120 }
files["spec/**/*_spec.lua"] = { std = "+busted" }
files["bench"] = { max_line_length = 120 }
