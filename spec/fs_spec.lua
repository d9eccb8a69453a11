-- Files and file-system calls (fs.c, fs.lua): Lua's io file methods as
-- checkpoints, loom.fs helpers, errors, cancellation of started requests.
local loom = require("loom")
local core = require("loom.core")
local H = require("helpers")

local dir

local function run(fn)
  return loom.run(fn)
end

-- Wait until every fs request (orphaned ones included) has completed.
local function settle()
  for _ = 1, 400 do
    if core.fs_stats().requests == 0 then return end
    loom.sleep(0.005)
  end
end

local function oserror(fn, ...)
  local e = H.capture_error(fn, ...)
  assert(loom.is(e, loom.OSError), "expected an OSError, got " .. tostring(e))
  return e
end

local function write_plain(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

before_each(function()
  run(function() dir = loom.fs.mkdtemp("/tmp/loom-fs-spec-") end)
end)

after_each(function()
  run(settle)
  os.execute("rm -rf '" .. dir .. "'")
  assert.same({ requests = 0, files = 0 }, core.fs_stats())
end)

describe("loom.open_file", function()
  it("writes and reads back with Lua's io formats", function()
    run(function()
      local p = dir .. "/a.txt"
      local f = loom.open_file(p, "w")
      assert.equal(f, f:write("one\n", 2, " ", 3.5, "\n", 1.0, "\nlast"))
      f:close()
      local g <close> = loom.open_file(p)
      assert.same({ "one", 2, 3.5, "\n" },
        { g:read("l", "n", "n", "L") })
      assert.equal("1", g:read("l"))
      assert.equal("last", g:read("l"))
      assert.is_nil(g:read("l"))
      assert.equal("", g:read("a"))
      assert.is_nil(g:read(1))
      assert.is_nil(g:read(0))
    end)
  end)

  it("reads counts, stops at the first format that fails", function()
    run(function()
      write_plain(dir .. "/b", "abcdef")
      local f <close> = loom.open_file(dir .. "/b", "rb")
      assert.equal("", f:read(0))
      assert.equal("abc", f:read(3))
      local a, b, c = f:read(10, 1, "a")
      assert.equal("def", a)
      assert.is_nil(b)
      assert.is_nil(c)
    end)
  end)

  it("iterates lines with a format, keeping or dropping newlines", function()
    run(function()
      write_plain(dir .. "/l", "x\ny\n\nz")
      local f <close> = loom.open_file(dir .. "/l")
      local got = {}
      for l in f:lines() do got[#got + 1] = l end
      assert.same({ "x", "y", "", "z" }, got)
      f:seek("set")
      got = {}
      for l in f:lines("L") do got[#got + 1] = l end
      assert.same({ "x\n", "y\n", "\n", "z" }, got)
    end)
  end)

  it("seeks like io: set, cur, end, and reads at the new position", function()
    run(function()
      write_plain(dir .. "/s", "0123456789")
      local f <close> = loom.open_file(dir .. "/s", "r+")
      assert.equal(0, f:seek())
      assert.equal("01", f:read(2))
      assert.equal(2, f:seek("cur"))
      assert.equal(10, f:seek("end"))
      assert.equal(7, f:seek("end", -3))
      assert.equal("789", f:read("a"))
      assert.equal(4, f:seek("set", 4))
      f:write("AB")
      assert.equal(6, f:seek())
      assert.equal("67", f:read(2))
      f:flush()
      assert.equal("0123AB6789", loom.fs.read_file(dir .. "/s"))
    end)
  end)

  it("appends in 'a' and 'a+' modes", function()
    run(function()
      write_plain(dir .. "/ap", "start-")
      local f = loom.open_file(dir .. "/ap", "a+")
      f:write("x"):write("y")
      assert.equal(8, f:seek("cur"))
      f:seek("set")
      assert.equal("start-xy", f:read("a"))
      f:close()
      local g = loom.open_file(dir .. "/ap", "a")
      g:write("z")
      g:close()
      assert.equal("start-xyz", loom.fs.read_file(dir .. "/ap"))
    end)
  end)

  it("truncates with 'w' and 'w+'", function()
    run(function()
      write_plain(dir .. "/t", "old content")
      local f <close> = loom.open_file(dir .. "/t", "w+")
      assert.equal("", f:read("a"))
      f:write("new")
      f:seek("set")
      assert.equal("new", f:read("a"))
      assert.equal(3, f:stat().size)
    end)
  end)

  it("buffers writes as setvbuf says", function()
    run(function()
      local p = dir .. "/v"
      local f <close> = loom.open_file(p, "w")
      f:write("held")
      assert.equal("", loom.fs.read_file(p))
      assert.is_true(f:setvbuf("no"))
      f:write("!")
      assert.equal("held!", loom.fs.read_file(p))
      f:setvbuf("line")
      f:write("a")
      assert.equal("held!", loom.fs.read_file(p))
      f:write("b\n")
      assert.equal("held!ab\n", loom.fs.read_file(p))
      f:setvbuf("full", 4)
      f:write("123")
      assert.equal("held!ab\n", loom.fs.read_file(p))
      f:write("4")
      assert.equal("held!ab\n1234", loom.fs.read_file(p))
      assert.equal("bad argument #1 to 'setvbuf' (invalid option 'some')",
        H.message(H.capture_error(f.setvbuf, f, "some")))
    end)
  end)

  it("every call is a checkpoint, even served from the buffer", function()
    run(function()
      write_plain(dir .. "/c", "a\nb\n")
      local f <close> = loom.open_file(dir .. "/c")
      f:read("l")
      local log, add = H.log()
      loom.task_group(function(tg)
        tg:start_soon(function() add("other") end)
        f:read("l")
        add("read")
      end)
      assert.same({ "other", "read" }, log)
    end)
  end)

  it("closes with <close>, close() is idempotent, closed raises", function()
    local f
    run(function()
      do
        local g <close> = loom.open_file(dir .. "/z", "w")
        g:write("data")
        f = g
      end
      f:close()
      assert.equal("data", loom.fs.read_file(dir .. "/z"))
      for _, m in ipairs({ "read", "write", "seek", "flush", "stat",
          "lines" }) do
        local e = H.capture_error(f[m], f)
        assert.is_true(loom.is(e, loom.ClosedResourceError))
        assert.equal(m .. ": the file is closed", e.message)
      end
      assert.equal("loom.File: " .. dir .. "/z (closed)", tostring(f))
    end)
  end)

  it("raises OSError with the code and the path", function()
    run(function()
      local e = oserror(loom.open_file, dir .. "/missing")
      assert.equal("ENOENT", e.code)
      assert.equal(dir .. "/missing", e.path)
      assert.equal("open_file: no such file or directory (" .. dir
        .. "/missing)", e.message)
      e = oserror(loom.open_file, dir)
      assert.equal("EISDIR", e.code)
      e = oserror(loom.open_file, dir, "w")
      assert.equal("EISDIR", e.code)
      write_plain(dir .. "/file", "x")
      e = oserror(loom.open_file, dir .. "/file/below", "w")
      assert.equal("ENOTDIR", e.code)
      -- Permission denied: mode bits stop everyone but root; root is
      -- refused by a procfs file that takes no writes (at open or at the
      -- first write, depending on the kernel).
      local uid = io.popen("id -u"):read("l")
      if uid ~= "0" then
        write_plain(dir .. "/locked", "x")
        assert(os.execute("chmod 000 '" .. dir .. "/locked'"))
        assert.equal("EACCES", oserror(loom.open_file, dir .. "/locked").code)
      else
        e = oserror(function()
          local p <close> = loom.open_file("/proc/version", "w")
          p:write("x"):flush()
        end)
        assert.truthy(({ EACCES = true, EIO = true, EPERM = true })[e.code])
        H.contains(e.message, "(/proc/version)")
      end
      local f <close> = loom.open_file(dir .. "/file")
      e = oserror(f.write, f, "x")
      assert.equal("EBADF", e.code)
      local g <close> = loom.open_file(dir .. "/file", "a")
      e = oserror(g.read, g)
      assert.equal("EBADF", e.code)
    end)
  end)

  it("rejects invalid modes, paths and formats", function()
    run(function()
      for _, m in ipairs({ "x", "rw", "r+x", "", "+r", "wb+" }) do
        local e = H.capture_error(loom.open_file, dir .. "/q", m)
        assert.equal("bad argument #2 to 'open_file' (invalid mode)",
          H.message(e))
      end
      assert.equal("bad argument #1 to 'open_file' (string expected, got "
        .. "no value)", H.message(H.capture_error(loom.open_file)))
      write_plain(dir .. "/q", "1")
      local f <close> = loom.open_file(dir .. "/q", "rb")
      assert.equal("bad argument #1 to 'read' (invalid format)",
        H.message(H.capture_error(f.read, f, "x")))
      assert.equal("bad argument #1 to 'seek' (invalid option 'top')",
        H.message(H.capture_error(f.seek, f, "top")))
    end)
    assert.equal("loom.open_file: must be called from inside a loom task "
      .. "(start one with loom.run)",
      H.message(H.capture_error(loom.open_file, "/etc/hostname")))
    local f
    run(function() f = loom.open_file(dir .. "/q") end)
    assert.equal("loom.File:read: must be called from inside a loom task "
      .. "(start one with loom.run)", H.message(H.capture_error(f.read, f)))
    run(function() f:close() end)
  end)

  it("reads ahead in sequence, never returning stale bytes", function()
    run(function()
      local K = 65536
      local p = dir .. "/seq"
      write_plain(p, ("a"):rep(K) .. ("b"):rep(K) .. ("c"):rep(K)
        .. ("d"):rep(K) .. "tail")
      local f <close> = loom.open_file(p, "r+b")
      assert.equal(("a"):rep(K), f:read(K))
      assert.equal(("b"):rep(K), f:read(K))   -- the next chunk is read ahead
      f:seek("set", 2 * K)
      f:write(("Z"):rep(K))                   -- over the chunk read ahead
      f:seek("set", 2 * K)
      assert.equal(("Z"):rep(K), f:read(K))
      assert.equal(("d"):rep(K), f:read(K))
      assert.equal("tail", f:read(K))
      assert.is_nil(f:read(K))
      f:seek("set", 0)
      local n = 0
      for chunk in f:lines(1000) do n = n + #chunk end
      assert.equal(4 * K + 4, n)
    end)
  end)

  it("reads a large sparse file in chunks with bounded memory", function()
    run(function()
      local p = dir .. "/big"
      local size = 64 * 1024 * 1024
      local f = loom.open_file(p, "w")
      f:seek("set", size - 1)
      f:write("!")
      f:close()
      collectgarbage()
      local base = collectgarbage("count")
      local peak, total = 0, 0
      local g <close> = loom.open_file(p, "rb")
      while true do
        local chunk = g:read(65536)
        if chunk == nil then break end
        total = total + #chunk
        local kb = collectgarbage("count") - base
        if kb > peak then peak = kb end
      end
      assert.equal(size, total)
      assert.is_true(peak < 8 * 1024, "memory grew by " .. peak .. " KiB")
    end)
  end)
end)

describe("cancellation", function()
  local function fifo()
    local p = dir .. "/fifo"
    assert(os.execute("mkfifo '" .. p .. "'"))
    return p
  end

  it("drops the result of an open libuv already started", function()
    run(function()
      local p = fifo()
      local scope = loom.move_on_after(0.05, function()
        loom.open_file(p, "r")   -- blocks in the pool: no writer yet
      end)
      assert.is_true(scope.cancelled_caught)
      assert.same({ requests = 1, files = 0 }, core.fs_stats())
      -- The orphaned open completes once a writer comes; its fd is closed.
      local w = assert(io.open(p, "w"))
      w:close()
      settle()
      assert.same({ requests = 0, files = 0 }, core.fs_stats())
    end)
  end)

  it("keeps the fd of a file until a cancelled read completed", function()
    run(function()
      local p = fifo()
      local f
      loom.task_group(function(tg)
        tg:start_soon(function() f = loom.open_file(p, "r") end)
        loom.sleep(0.02)
        local w = assert(io.open(p, "w"))
        loom.sleep(0.02)
        local scope = loom.move_on_after(0.05, function() f:read(10) end)
        assert.is_true(scope.cancelled_caught)
        f:close()
        assert.same({ requests = 1, files = 1 }, core.fs_stats())
        w:write("late")
        w:close()
      end)
      settle()
      assert.same({ requests = 0, files = 0 }, core.fs_stats())
    end)
  end)

  it("a cancelled write that libuv started still lands", function()
    run(function()
      local p = fifo()
      local out = dir .. "/drained"
      -- A reader that opens at once but reads only later: the write blocks
      -- in the pool once the pipe is full.
      os.execute(("sh -c 'exec 3<%s; sleep 0.3; cat <&3 >%s' &")
        :format(p, out))
      local f = loom.open_file(p, "w")
      local data = ("w"):rep(1024 * 1024)
      local scope = loom.move_on_after(0.1, function() f:write(data) end)
      assert.is_true(scope.cancelled_caught)
      assert.same({ requests = 1, files = 1 }, core.fs_stats())
      f:close()   -- deferred until the write completed
      settle()
      assert.same({ requests = 0, files = 0 }, core.fs_stats())
      for _ = 1, 200 do
        if #loom.fs.read_file(out) == #data then break end
        loom.sleep(0.01)
      end
      assert.equal(#data, #loom.fs.read_file(out))
    end)
  end)

  it("cancels each path call at its checkpoint", function()
    run(function()
      write_plain(dir .. "/f", "x")
      local calls = {
        function() loom.fs.stat(dir) end,
        function() loom.fs.lstat(dir) end,
        function() loom.fs.mkdir(dir .. "/m") end,
        function() loom.fs.unlink(dir .. "/f") end,
        function() loom.fs.rename(dir .. "/f", dir .. "/g") end,
        function() loom.fs.copyfile(dir .. "/f", dir .. "/g") end,
        function() loom.fs.realpath(dir) end,
        function() loom.fs.readdir(dir) end,
        function() loom.fs.mkdtemp(dir .. "/t") end,
        function() loom.fs.read_file(dir .. "/f") end,
        function() loom.open_file(dir .. "/f") end,
      }
      for i, call in ipairs(calls) do
        local scope = loom.cancel_scope()
        scope:cancel()
        scope:run(call)
        assert(scope.cancelled_caught, "call " .. i)
      end
      assert.is_true(loom.fs.exists(dir .. "/f"))
      assert.is_false(loom.fs.exists(dir .. "/m"))
      local f <close> = loom.open_file(dir .. "/f", "r+")
      local methods = {
        function() f:read("a") end,
        function() f:write("y") end,
        function() f:seek("set", 0) end,
        function() f:flush() end,
        function() f:stat() end,
        function() f:lines()() end,
      }
      for i, call in ipairs(methods) do
        local scope = loom.cancel_scope()
        scope:cancel()
        scope:run(call)
        assert(scope.cancelled_caught, "method " .. i)
      end
      assert.equal("x", f:read("a"))
    end)
  end)
end)

describe("loom.fs", function()
  it("stats with luv's field names", function()
    run(function()
      write_plain(dir .. "/s", "12345")
      local st = loom.fs.stat(dir .. "/s")
      assert.equal(5, st.size)
      assert.equal("file", st.type)
      assert.equal("float", math.type(st.mtime))
      for _, k in ipairs({ "mode", "nlink", "uid", "gid", "ino", "dev" }) do
        assert.equal("integer", math.type(st[k]), k)
      end
      assert(os.execute("ln -s s '" .. dir .. "/lnk'"))
      assert.equal("link", loom.fs.lstat(dir .. "/lnk").type)
      assert.equal("file", loom.fs.stat(dir .. "/lnk").type)
      assert.equal("directory", loom.fs.stat(dir).type)
      assert.is_true(loom.fs.exists(dir .. "/s"))
      assert.is_false(loom.fs.exists(dir .. "/nope"))
      assert.is_false(loom.fs.exists(dir .. "/s/below"))
    end)
  end)

  it("reads, writes, copies, renames and removes", function()
    run(function()
      loom.fs.write_file(dir .. "/a", "content")
      assert.equal("content", loom.fs.read_file(dir .. "/a"))
      loom.fs.copyfile(dir .. "/a", dir .. "/b")
      loom.fs.rename(dir .. "/b", dir .. "/c")
      assert.equal("content", loom.fs.read_file(dir .. "/c"))
      assert.is_false(loom.fs.exists(dir .. "/b"))
      loom.fs.unlink(dir .. "/c")
      assert.equal("ENOENT", oserror(loom.fs.unlink, dir .. "/c").code)
      assert.equal("ENOENT", oserror(loom.fs.read_file, dir .. "/c").code)
    end)
  end)

  it("makes directories, with parents, and lists them", function()
    run(function()
      loom.fs.mkdir(dir .. "/x/y/z", { parents = true })
      loom.fs.mkdir(dir .. "/x/y/z", { parents = true })
      assert.equal("EEXIST", oserror(loom.fs.mkdir, dir .. "/x").code)
      assert.equal("ENOENT", oserror(loom.fs.mkdir, dir .. "/p/q").code)
      loom.fs.write_file(dir .. "/x/f", "")
      assert.equal("EEXIST", oserror(loom.fs.mkdir, dir .. "/x/f",
        { parents = true }).code)
      local seen = {}
      for name, ty in loom.fs.readdir(dir .. "/x") do seen[name] = ty end
      assert.same({ y = "directory", f = "file" }, seen)
      assert.equal("ENOTEMPTY", oserror(loom.fs.rmdir, dir .. "/x").code)
      loom.fs.rmdir(dir .. "/x/y/z")
      assert.is_false(loom.fs.exists(dir .. "/x/y/z"))
      assert.equal(loom.fs.realpath(dir) .. "/x",
        loom.fs.realpath(dir .. "/x/y/../."))
      local t = loom.fs.mkdtemp(dir .. "/tmp-")
      assert.truthy(t:match("^" .. dir:gsub("%p", "%%%0") .. "/tmp%-"
        .. ("[%w_]"):rep(6) .. "$"))
      assert.equal("directory", loom.fs.stat(t).type)
      local f <close> = loom.open_file(t .. "/m", "w")
      assert.equal("loom.File has no method 'wirte' (did you mean 'write'?)",
        H.message(H.capture_error(function() return f.wirte end)))
      f:close()
      assert.equal("loom.File has no method 'h2'", H.message(
        H.capture_error(function() return f.h2 end)))
      assert.equal("bad argument #2 to 'mkdir' (unknown option 'parent')",
        H.message(H.capture_error(loom.fs.mkdir, dir .. "/k",
          { parent = true })))
    end)
  end)
end)
