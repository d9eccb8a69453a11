-- Re-raises: loom re-raises an error on its way out of a scope, a group or
-- loom.catch with core.rethrow, which keeps the traceback of where the error
-- was first raised. Nothing depends on where loom's Lua files were loaded
-- from (an embedding host preloads them from strings).
local H = require("helpers")
local loom = require("loom")
local core = require("loom.core")
local errors = require("loom.errors")

local run = H.run

describe("core.rethrow", function()
  it("raises its argument unchanged, without a position", function()
    local t = {}
    assert.equal(t, H.capture_error(core.rethrow, t))
    assert.equal("plain", H.capture_error(core.rethrow, "plain"))
  end)

  it("keeps the traceback of the first raise of the same value", function()
    local where
    local err = H.capture_error(run, function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          local _, e = xpcall(function()
            where = H.here(); error({ "first" })
          end, core.msgh)
          core.rethrow(e)
        end)
      end)
    end)
    H.contains(err.tracebacks[1], where)
  end)

  it("error(e, 0) of the same value is a new raise: a new traceback",
    function()
      local first, again
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            local _, e = xpcall(function()
              first = H.here(); error({ "first" })
            end, core.msgh)
            again = H.here(); error(e, 0)
          end)
        end)
      end)
      H.contains(err.tracebacks[1], again)
      assert.is_nil(err.tracebacks[1]:find(first, 1, true))
    end)

  it("a rethrow caught by a plain pcall does not mark a later raise",
    function()
      local first, final
      local err = H.capture_error(run, function()
        loom.task_group(function(tg)
          tg:start_soon(function()
            local _, e = xpcall(function()
              first = H.here(); error("same", 0)
            end, core.msgh)
            pcall(core.rethrow, e)
            final = H.here(); error("same", 0)
          end)
        end)
      end)
      H.contains(err.tracebacks[1], final)
      assert.is_nil(err.tracebacks[1]:find(first, 1, true))
    end)

  it("a scope's re-raise keeps the body's traceback", function()
    local where
    local err = H.capture_error(run, function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.move_on_after(10, function()
            where = H.here(); error({ "in scope" })
          end)
        end)
      end)
    end)
    H.contains(err.tracebacks[1], where)
  end)

  it("a re-raise inside a wrapper of the Lua front keeps the first "
    .. "traceback", function()
    -- BufferedStream:receive_exactly (net.lua) catches the stream's error
    -- with pcall and re-raises it: the traceback stays the one of the
    -- stream's own raise (recorded by the scope), not net.lua's line.
    local where
    local stream = {}
    function stream.receive()
      loom.move_on_after(10, function()
        where = H.here(); error({ "from the stream" })
      end)
    end
    local err = H.capture_error(run, function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.buffered(stream):receive_exactly(4)
        end)
      end)
    end)
    assert.equal("from the stream", err.errors[1][1])
    H.contains(err.tracebacks[1], where)
    assert.is_nil(err.tracebacks[1]:find("net.lua", 1, true),
      err.tracebacks[1])
  end)

  it("loom.catch's re-raise keeps the first traceback", function()
    local where
    local err = H.capture_error(run, function()
      loom.task_group(function(tg)
        tg:start_soon(function()
          loom.catch({ { loom.TimeoutError, function() end } }, function()
            where = H.here(); error({ "not a timeout" })
          end)
        end)
      end)
    end)
    H.contains(err.tracebacks[1], where)
  end)
end)

-- Run `body` in a fresh lua5.4 whose loom.* modules are loaded from their
-- source text, each under the chunk name chunkname(rel) (rel: "init",
-- "process", "sync" ...), as a host embedding the front does. Returns the
-- output and the line of the script that contains `marker`.
local function run_with_front(chunkname, body, marker)
  local path = H.loom_script("") -- only for a temporary name
  os.remove(path)
  local script = ([=[
    local root, chunkname = %q, %s
    table.insert(package.searchers, 2, function(name)
      if name ~= "loom" and not name:match("^loom%%.") then return nil end
      if name == "loom.core" then return nil end
      local rel = name:gsub("^loom%%.?", ""):gsub("%%.", "/")
      if rel == "" then rel = "init" end
      local h = io.open(root .. "/lua/loom/" .. rel .. ".lua", "rb")
      if h == nil then return nil end
      local src = h:read("a")
      h:close()
      return assert(load(src, chunkname(rel), "t"))
    end)
    local loom = require("loom")
]=]):format(H.root, chunkname) .. body
  local line = 0
  for l in script:gmatch("([^\n]*)\n") do
    line = line + 1
    if l:find(marker, 1, true) then break end
  end
  H.write_file(path, script)
  local out, ok = H.sh(H.lua_env() .. " lua5.4 " .. H.q(path))
  os.remove(path)
  assert.is_true(ok, out)
  return out, line
end

describe("the Lua front loaded from strings", function()
  it("re-raises keep the first traceback whatever the chunk names",
    function()
      -- chunk names with no directory at all
      local out, line = run_with_front(
        [[function(rel) return "=" .. rel:gsub("/", "_") end]], [[
        local ok, err = pcall(loom.run, function()
          loom.task_group(function(tg)
            tg:start_soon(function()
              loom.move_on_after(10, function()
                error({ "boom" })
              end)
            end)
          end)
        end)
        assert(not ok)
        io.write(tostring(err.tracebacks[1]))
      ]], "boom")
      H.contains(out, ":" .. line .. ":")
      -- the first raise, not the scope's re-raise inside the front
      H.contains(out, "[C]: in function 'error'")
    end)
end)

describe("argument errors of the Lua front compiled into libloom", function()
  it("blame the user's line when the chunks are named '=loom/<file>'",
    function()
      -- libloom names its chunks "=loom/init.lua", "=loom/process.lua" ...:
      -- process.lua's wrapper must still skip its own frames.
      local out, line = run_with_front(
        [[function(rel) return "=loom/" .. rel .. ".lua" end]], [[
        local ok, err = pcall(loom.run, function()
          loom.run_process(42) -- the blamed line
        end)
        assert(not ok)
        io.write(tostring(err))
      ]], "the blamed line")
      local first = out:match("^[^\n]*")
      H.contains(first, ":" .. line .. ": bad argument #1 to 'run_process'")
      assert.is_nil(first:find("loom/", 1, true), first)
    end)
end)

describe("an unknown error class named by C", function()
  it("raises a clear internal error instead of making loom.Error", function()
    local hooks = errors.hooks(core)
    local err = H.capture_error(hooks.new_error, "NoSuchError", "boom")
    H.contains(tostring(err), "internal error: unknown error class "
      .. "'NoSuchError'")
    assert.is_true(loom.is(hooks.new_error("OSError", "x", "EIO"),
      loom.OSError))
  end)
end)
