-- The remote mailbox (loom_remote_open/post/release in loom.h): posts from
-- any thread run on the owner thread, in order per remote, at the next step
-- or pass of loom.run; a blocking loom.run wakes for them; an open remote
-- keeps the runtime from being declared deadlocked; after the runtime
-- closes, posts get LOOM_ECLOSED and nothing leaks (valgrind, ASan) or
-- races (`make tsan`). The scenarios are C programs: spec/hosts/remote_host.c.
local C = require("chost")

local function scenario(name, arg)
  local out, err, code = C.sh3(("timeout 120 %s %s %s %s"):format(
    C.prefix, C.quote(C.host("remote_host")), name, arg or ""))
  assert(code == 0, ("remote_host %s exited with %s\nstdout:\n%s\nstderr:\n%s")
    :format(name, tostring(code), out, err))
  return out, err
end

describe("loom_remote", function()
  it("runs the posts of each remote in order, from four threads", function()
    local out = scenario("order", C.prefix == "" and 2000 or 200)
    local n = C.prefix == "" and 8000 or 800
    assert.are.equal(("order: %d posts from 4 remotes, each in order: true\n")
                     :format(n), out)
  end)

  it("runs the posts of several remotes in posting order", function()
    assert.are.equal("interleave: a1 b1 a2 b2 b3 a3\n",
                     scenario("interleave"))
  end)

  it("wakes a blocking loom.run, which waits in the poll until then",
     function()
    assert.are.equal("wake: loom.run woke for the post (7), waited for it, "
                     .. "asleep\n",
                     scenario("wake"))
  end)

  it("keeps the runtime from a deadlock only while a remote is open",
     function()
    assert.are.equal("release: deadlock reported\n"
                     .. "released before run: deadlock reported\n",
                     scenario("release"))
  end)

  it("runs queued posts at close; later posts get LOOM_ECLOSED", function()
    assert.are.equal(table.concat({
      "close: 3 queued posts ran at close",
      "close: post after close -> LOOM_ECLOSED",
      "close: post from a thread after close -> LOOM_ECLOSED",
      "close: 3 posts ran in all", "" }, "\n"), scenario("close"))
  end)

  it("loom_close runs queued posts; a remote outlives the state", function()
    assert.are.equal(table.concat({
      "loom_close: open before require -> a remote",
      "loom_close: before close ran: early",
      "loom_close: queued posts ran: early queued1 queued2",
      "loom_close: loom_preload after -> LOOM_ECLOSED",
      "loom_close: post after -> LOOM_ECLOSED, open after -> NULL, "
        .. "second close -> 0",
      "loom_close: post from a thread -> LOOM_ECLOSED", "" }, "\n"),
      scenario("loom_close"))
  end)

  it("lets worker threads resolve loom.futures that tasks wait on",
     function()
    assert.are.equal(table.concat({
      "future: 55 from a thread",
      "future: worker failed",
      "future: 5050 from a thread",
      "future: 500500 from a thread", "" }, "\n"), scenario("future"))
  end)

  it("calls cfg.wake so that a host-driven runtime steps for a post",
     function()
    assert.are.equal(table.concat({
      "step: task got post 1",
      "step: task got post 2",
      "step: task got post 3",
      "step: 3 wakes, one step each",
      "step: level closed: true", "" }, "\n"), scenario("step"))
  end)

  it("reports a failing post and runs the next ones", function()
    local out, err = scenario("error")
    assert.are.equal("error: posts that ran: before after\n", out)
    assert.truthy(err:find("loom: unhandled error in remote post: "
                           .. "post exploded", 1, true), err)
  end)

  it("runs a post queued by a post at the next pass, not the same one",
     function()
    assert.are.equal("repost: post3 pass1 post2 pass2 post1 pass3 pass4\n",
                     scenario("repost"))
  end)

  it("follows the runtime to a borrowed loop and keeps it running while "
     .. "open", function()
    assert.are.equal(table.concat({
      "borrowed: task got post 1",
      "borrowed: task got post 2",
      "borrowed: task got post 3",
      "borrowed: uv_run returned, 0 alive",
      "borrowed: uv_loop_close -> ok", "" }, "\n"), scenario("borrowed"))
  end)

  it("counts open remotes, queued posts and its handle in remote_stats",
     function()
    assert.are.equal(table.concat({
      "stats before: open 0, queued 0, handles 0",
      "stats 2 open, 2 posts: open 2, queued 2, handles 1",
      "stats after a run: open 1, queued 0, handles 1",
      "stats after loom_close: open 0, queued 0, handles 0", "" }, "\n"),
      scenario("stats"))
  end)

  it("answers bad arguments with a status", function()
    assert.are.equal(table.concat({
      "args: open(NULL) -> NULL",
      "args: post(NULL, fn) -> LOOM_ERRARG",
      "args: post(r, NULL) -> LOOM_ERRARG",
      "args: release(NULL) does nothing", "" }, "\n"), scenario("args"))
  end)

  it("runs every post it accepted exactly once when closed under posting "
     .. "threads", function()
    assert.are.equal("race: every accepted post ran once: yes\n",
                     scenario("race"))
  end)
end)
