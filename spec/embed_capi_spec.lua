-- The C API of loom.h, driven by a C host (spec/embed/capi.c) linked
-- against the built loom.core: per-frame loom_step on a manual clock, the C
-- error hook, every status for bad input and the wrong time, behaviour after
-- loom_close, on_error = "raise", a C host clock, out of memory during
-- loom_step, two runtimes in one process, and a borrowed libuv loop.

local fresh = require("embed.fresh")
local q = fresh.quote

-- sh(cmd) -> output (stdout and stderr), exit code
local sh = require("chost").sh

describe("the C API (loom.h)", function()
  local bin = os.tmpname()
  local root = fresh.root
  local build = os.getenv("LOOM_BUILD_DIR") or "build"
  local prefix = os.getenv("LOOM_TEST_PREFIX") or ""

  lazy_setup(function()
    local so = root .. "/" .. build .. "/loom/core.so"
    local out, code = sh(("cc -Wall -Wextra -Werror -O1 -o %s %s -I%s "
      .. "$(pkg-config --cflags lua5.4 libuv) %s -Wl,-rpath,%s "
      .. "$(pkg-config --libs lua5.4 libuv) -lm")
      :format(q(bin), q(root .. "/spec/embed/capi.c"), q(root .. "/csrc"),
        q(so), q(root .. "/" .. build .. "/loom")))
    assert.are.equal(0, code, out)
  end)
  lazy_teardown(function() os.remove(bin) end)

  local function scenario(name)
    local out, code = sh(("cd %s && timeout 120 %s %s %s %s"):format(q(root),
      prefix, q(bin), name, q("./lua/?.lua;./lua/?/init.lua")))
    assert.are.equal(0, code, out)
    assert.is_nil(out:find("FAIL", 1, true), out)
    return out
  end

  it("drives a manual-clock runtime frame by frame; the C hook gets each "
    .. "error with the task name and traceback", function()
      assert.are.equal([[
open OK
open again OK
timeout ready 0
npc frame	1
step OK
ready 0 next inf timeout -1
npc frame	2
step OK
ready 0 next inf timeout -1
npc frame	3
hook(ud): task 'bad npc': npc crashed; traceback yes
step OK
ready 0 next inf timeout -1
step OK
ready 0 next 0.5 timeout -1
step OK
ready 0 next 0.5 timeout -1
step OK
ready 0 next 0.5 timeout -1
advance OK
now 0.5 timeout 0
npc woke at	0.5
step OK
backend fd yes
close OK
]], scenario("frames"))
    end)

  it("returns the contract's status for bad input, the wrong time and "
    .. "after loom_close", function()
      assert.are.equal([[
open size too big ERRARG
open unknown clock ERRARG
open host clock without fn ERRARG
open small size OK
open NULL cfg OK
advance real clock ERRSTATE
open manual OK
step budget -1 ERRARG
step budget NaN ERRARG
step max_resumes -1 ERRARG
advance -1 ERRARG
advance NaN ERRARG
advance inf ERRARG
close grace NaN ERRARG
step huge budget OK
in a task:	ERRSTATE	ERRSTATE	ERRSTATE
step OK
open after tasks ran ERRSTATE
in loom.run:	ERRSTATE	ERRSTATE	OK
frames 1
close OK
close again OK
step after close ECLOSED
advance after close ECLOSED
open after close ECLOSED
after close: timeout -1 next inf fd -1 remote NULL
false	loom.step: the runtime is closed
false	loom.run: the runtime is closed
false	loom.host_group: the runtime is closed
false	This task group is not active; no new tasks can be started.
step NULL state ERRARG
]], scenario("bad_input"))
    end)

  it("after loom_close, files, UDP and fd waits raise instead of touching "
    .. "the closed loop; lua_close finalises what was left open", function()
      assert.are.equal([[
opened yes
close OK
false	loom.create_udp_socket: the runtime is closed
false	loom.create_connected_udp_socket: the runtime is closed
false	loom.fs.stat: the runtime is closed
false	loom.open_file: the runtime is closed
false	loom.wait_readable: the runtime is closed
false	loom.File:close: the runtime is closed
true	nil
true	nil
lua_close OK
]], scenario("io_closed"))
    end)

  it("on_error = \"raise\": loom_step returns LOOM_ERRRUN with the error on "
    .. "the stack, one per step", function()
      assert.are.equal("step ERRRUN e1\nstep ERRRUN e2\nstep OK \nstack 0\n"
        .. "close OK\n", scenario("raise"))
    end)

  it("a C host clock; going backwards is LOOM_ERRRUN naming it", function()
    assert.are.equal("open OK\nstep OK\ntimeout 2000\nwoke\t52.0\nstep OK\n"
      .. "backwards: ERRRUN backwards\nclose OK\n", scenario("host_clock"))
  end)

  it("loom_close cancels every host group, waits up to grace for cleanup, "
    .. "and lua_close frees everything", function()
      assert.are.equal("step OK\ncleanup\t1\ttrue\ncleanup\t2\ttrue\n"
        .. "cleanup\t3\ttrue\nslow cleanup done\nclose OK\nalive\t0\t0\t1\n"
        .. "stuck\tfalse\nbytes after lua_close 0\n", scenario("close"))
    end)

  it("out of memory during loom_step: LOOM_ERRMEM, the state stays usable "
    .. "and closable, nothing leaks", function()
      assert.are.equal("oom: some ERRMEM yes, some OK yes, leaks 0, other 0\n",
        scenario("oom"))
    end)

  it("two runtimes in one process keep their own clocks and frames",
    function()
      assert.are.equal("a woke\t1.0\t3\nb frame\t4\na now 2, b clock real yes\n"
        .. "advance b (real) ERRSTATE\nclose a OK\nstep b after a closed OK\n",
        scenario("two"))
    end)

  it("loom_timeout_ms on each clock: ready work, deadlines, next_frame",
    function()
      assert.are.equal(
        "real: idle -1, spawned 0, sleeping 4000..5000, next deadline now+5\n"
        .. "manual: idle -1, spawned 0, sleeping -1, next deadline now+5\n"
        .. "autojump: idle -1, spawned 0, sleeping 0, next deadline now+5\n",
        scenario("timeouts"))
    end)

  it("on a borrowed loop, work spawned by host code before the host's "
    .. "uv_run runs even when nothing else keeps the loop alive", function()
      assert.are.equal("open borrowed OK\nran\nslept\nalive\t0\nclose OK\n"
        .. "uv_loop_close 0\n", scenario("uv_idle"))
    end)

  it("runs on a borrowed libuv loop that the host runs, with no loom_step; "
    .. "the host's uv_loop_close succeeds after loom_close", function()
      assert.are.equal("open borrowed OK\nfalse\tloom.run: the runtime is "
        .. "driven by the host (a host group is open); use loom.step\n"
        .. "loom tick\t1\nloom tick\t2\nloom tick\t3\ntcp\techo\n"
        .. "host timer fired 1\n"
        .. "alive\t0\nclose OK\nuv_loop_close 0\n", scenario("uv"))
    end)
end)
