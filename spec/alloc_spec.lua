-- The allocation-failure test: spec/alloc/host.c embeds Lua with an
-- allocator that fails at the N-th allocation and runs spec/alloc/workload.lua
-- (every module of loom) for many N, each in a forked child. Every case must
-- end in success or a clean "not enough memory", with no crash, hang or
-- sanitizer report, 0 bytes and 0 file descriptors left after lua_close,
-- and a healthy fresh state afterwards; in the transient mode (two failures,
-- then memory comes back) the same state must run the workload again; in the
-- single mode one allocation fails, so Lua runs a full emergency collection
-- at that point and retries: everything loom holds must be anchored.
--
-- The suite runs a sampled subset (LOOM_ALLOC_CASES, LOOM_ALLOC_SEED);
-- `make alloc-sweep` runs every N, and `make asan` runs it under ASan.

-- sh(cmd) -> output (stdout and stderr), exit code
local sh = require("chost").sh

local root = sh("pwd"):gsub("%s+$", "")
local prefix = os.getenv("LOOM_TEST_PREFIX") or ""
local under_valgrind = prefix:find("valgrind", 1, true) ~= nil
if under_valgrind then
  -- The children's libuv worker threads keep glibc's resolver state.
  prefix = prefix:gsub("valgrind", "valgrind --suppressions="
    .. root .. "/spec/alloc/valgrind.supp", 1)
end
local cases = tonumber(os.getenv("LOOM_ALLOC_CASES"))
  or (under_valgrind and 20 or 600)
local seed = tonumber(os.getenv("LOOM_ALLOC_SEED")) or 20261206

describe("allocation failures", function()
  local bin = os.tmpname()

  lazy_teardown(function() os.remove(bin) end)

  it("builds the host", function()
    local out, code = sh(("cc -O1 -g -o %s spec/alloc/host.c "
      .. "$(pkg-config --cflags --libs lua5.4) -ldl"):format(bin))
    assert.are.equal(0, code, out)
  end)

  for _, mode in ipairs({ "permanent", "transient", "single" }) do
    it(("every sampled N ends cleanly (%s failure)"):format(mode), function()
      local n = mode == "permanent" and cases or cases // 2
      local out, code = sh(("timeout 600 %s %s sample %q %s %d %d"):format(
        prefix, bin, root, mode, n, seed))
      assert.are.equal(0, code, out)
      assert.truthy(out:find(("alloc %s: %d cases, %%d+ ok, %%d+ out of "
        .. "memory, 0 failed"):format(mode, n)), out)
    end)
  end
end)
