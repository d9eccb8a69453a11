-- loom.stdin/stdout/stderr (pipe.c): a loom script runs as a child lua5.4
-- with its stdio on pipes, files, /dev/null.
local loom = require("loom")
local H = require("helpers")

local script = H.loom_script

local ECHO_UPPER = [[
loom.run(function()
  local i <close> = loom.stdin()
  local o <close> = loom.stdout()
  local e <close> = loom.stderr()
  e:send(tostring(i):match("%((.*)%)") .. "|" .. tostring(o):match("%((.*)%)")
    .. "\n")
  while true do
    local ok, chunk = pcall(i.receive, i)
    if not ok then
      assert(loom.is(chunk, loom.EndOfStream), tostring(chunk))
      break
    end
    o:send(chunk:upper())
  end
  o:send("done\n")
end)
print("print still works")
]]

describe("loom stdio streams", function()
  -- Nothing of this area left alive after each test.
  after_each(H.assert_no_child_leftovers)

  it("read stdin and write stdout through pipes", function()
    local path = script(ECHO_UPPER)
    loom.run(function()
      local p <close> = loom.open_process({ "lua5.4", path })
      local out = {}
      loom.task_group(function(tg)
        tg:start_soon(function()
          while true do
            local ok, c = pcall(p.stdout.receive, p.stdout)
            if not ok then return end
            out[#out + 1] = c
          end
        end)
        for _, word in ipairs({ "alpha ", "beta ", "gamma\n" }) do
          p.stdin:send(word)
          loom.sleep(0.01)
        end
        p.stdin:send_eof()
      end)
      assert.equal(0, p:wait())
      assert.equal("ALPHA BETA GAMMA\ndone\nprint still works\n",
        table.concat(out))
      assert.equal("pipe, receive-only|pipe, send-only\n",
        p.stderr:receive())
    end)
    os.remove(path)
  end)

  it("work with files and /dev/null, and never block the loop", function()
    local path = script(ECHO_UPPER)
    local input, output = os.tmpname(), os.tmpname()
    local f = io.open(input, "w")
    f:write(("abc"):rep(50000))
    f:close()
    loom.run(function()
      local r = loom.run_process(("lua5.4 %s < %s > %s"):format(path, input,
        output))
      assert.equal("file, receive-only|file, send-only\n", r.stderr)
      f = io.open(output)
      assert.equal(("ABC"):rep(50000) .. "done\nprint still works\n",
        f:read("a"))
      f:close()
      r = loom.run_process({ "lua5.4", path }, { stdin = "null" })
      assert.equal("done\nprint still works\n", r.stdout)
    end)
    os.remove(input)
    os.remove(output)
    os.remove(path)
  end)

  it("a reader of stdin leaves other tasks running", function()
    local path = script([[
loom.run(function()
  loom.task_group(function(tg)
    tg:start_soon(function()
      local i <close> = loom.stdin()
      io.stdout:write("got ", i:receive(), "\n")
      io.stdout:flush()
      tg.cancel_scope:cancel()
    end)
    for n = 1, 3 do
      loom.sleep(0.02)
      io.stdout:write("tick ", n, "\n")
      io.stdout:flush()
    end
  end)
end)
]])
    loom.run(function()
      local p <close> = loom.open_process({ "lua5.4", path })
      local b = loom.buffered(p.stdout)
      assert.equal("tick 1", b:receive_until("\n", 100))
      assert.equal("tick 2", b:receive_until("\n", 100))
      assert.equal("tick 3", b:receive_until("\n", 100))
      p.stdin:send("line\n")
      assert.equal("got line", b:receive_until("\n", 100))
      assert.equal(0, p:wait())
    end)
    os.remove(path)
  end)

  it("work on a terminal (a pty made by script(1))", function()
    local path = script([[
loom.run(function()
  local o <close> = loom.stdout()
  local i <close> = loom.stdin()
  o:send(tostring(o):match("%((.*)%)") .. "|" .. tostring(i):match("%((.*)%)")
    .. "\n")
  o:send("got " .. i:receive())
end)
]])
    loom.run(function()
      local r = loom.run_process({ "script", "-qec", "lua5.4 " .. path,
        "/dev/null" }, { input = "typed\n" })
      -- the terminal echoes the input and turns \n into \r\n
      assert.equal("typed\r\nterminal, send-only|terminal, receive-only\r\n"
        .. "got typed\r\n", r.stdout)
    end)
    os.remove(path)
  end)

  it("a blocked stdin read is cancellable", function()
    local path = script([[
loom.run(function()
  local i <close> = loom.stdin()
  local s = loom.move_on_after(0.05, function() i:receive() end)
  print("cancelled", s.cancelled_caught)
  print("then", i:receive())
end)
]])
    loom.run(function()
      local p <close> = loom.open_process({ "lua5.4", path })
      local b = loom.buffered(p.stdout)
      assert.equal("cancelled\ttrue", b:receive_until("\n", 100))
      p.stdin:send("later\n")
      assert.equal("then\tlater", b:receive_until("\n", 100))
    end)
    os.remove(path)
  end)

  it("stdin is receive-only, stdout send-only", function()
    loom.run(function()
      local i <close> = loom.stdin()
      local o <close> = loom.stdout()
      assert.matches("this stream is receive%-only",
        select(2, pcall(i.send, i, "x")))
      assert.matches("this stream is send%-only",
        select(2, pcall(o.receive, o)))
      assert.has_error(function() o:local_address() end)
    end)
  end)
end)
