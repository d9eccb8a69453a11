-- spec/helpers.lua: small helpers shared by the core specs.
--
--   local H = require("helpers")
--   H.run(fn, ...)            loom.run(fn, ...)
--   H.capture_error(fn, ...)  pcall fn, return its error (fails if none)
--   H.catch(fn, ...)          pcall fn, return its error or nil
--   H.raises(cls, fn, ...)    fn raises an error of loom class cls; returns it
--   H.fails_with(text, fn, ...)  fn raises an error whose text contains text
--   H.log()                   an event list and a function appending to it
--   H.message(err)            tostring(err) without a leading "file:line: "
--   H.first_line(err)         the same, first line only
--   H.contains(s, sub)        plain substring test that explains a failure
--   H.here()                  "short_src:line" of the caller
--   H.busy(seconds)           spin without a checkpoint
--   H.core_bug(pending, why, fn)  known core bug: see below
--   H.known_leak(why)         this test's leftovers are a known limitation
--
-- spec/setup.lua (loaded for every spec) fails a test that leaves live
-- tasks, deadlines, handles or requests behind; see spec/leak_check.lua.

local loom = require("loom")
local luassert = require("luassert")
local leak_check = require("leak_check")

local H = {}

--- H.run(fn, ...) -> loom.run(fn, ...)
function H.run(fn, ...)
  return loom.run(fn, ...)
end

--- H.capture_error(fn, ...) -> the error fn raises; fails the test when fn
--- returns normally.
function H.capture_error(fn, ...)
  local r = table.pack(pcall(fn, ...))
  if r[1] then
    error("expected an error, but the call returned " .. r.n - 1
      .. " value(s)", 2)
  end
  return r[2]
end

--- H.catch(fn, ...) -> the error fn raises, or nil when it returns.
function H.catch(fn, ...)
  local ok, err = pcall(fn, ...)
  if ok then return nil end
  return err
end

--- H.raises(cls, fn, ...) -> the error fn raises; fails the test unless fn
--- raises and the error is a loom error of class cls (loom.is).
function H.raises(cls, fn, ...)
  local ok, err = pcall(fn, ...)
  luassert.is_false(ok, "expected an error")
  luassert.is_true(loom.is(err, cls), "unexpected error: " .. tostring(err))
  return err
end

--- H.fails_with(text, fn, ...): fn raises an error whose tostring contains
--- text (plain).
function H.fails_with(text, fn, ...)
  local ok, err = pcall(fn, ...)
  luassert.is_false(ok, "expected an error")
  luassert.matches(text, tostring(err), 1, true)
end

--- H.log() -> list, add: add(v) appends v to list.
function H.log()
  local list = {}
  return list, function(v) list[#list + 1] = v end
end

--- H.message(err) -> tostring(err) with a leading "source:line: " removed.
function H.message(err)
  local s = tostring(err)
  return (s:gsub("^[^\n:]+:%d+: ", "", 1))
end

--- H.first_line(err) -> H.message(err) without the traceback that a string
--- error leaving loom.run carries.
function H.first_line(err)
  return (H.message(err):match("^[^\n]*"))
end

--- H.contains(s, sub): assert that string s contains sub (plain).
function H.contains(s, sub)
  if type(s) ~= "string" or s:find(sub, 1, true) == nil then
    error(("expected %q to contain %q"):format(tostring(s), sub), 2)
  end
  return true
end

--- H.here() -> "short_src:line" of the line that calls it.
function H.here()
  local info = debug.getinfo(2, "Sl")
  return info.short_src .. ":" .. info.currentline
end

--- H.busy(seconds): spin on loom.now() without reaching a checkpoint.
function H.busy(seconds)
  local stop = loom.now() + seconds
  while loom.now() < stop do end
end

--- H.core_bug(pending, why, fn): the test body fn asserts the correct
--- behaviour, which the core does not have yet. While fn fails, the test is
--- reported pending with `why`; once fn passes, the test fails so that the
--- marker gets removed.
--- Set LOOM_SPEC_SHOW_BUGS=1 to print what each such test fails with.
function H.core_bug(pending, why, fn)
  local ok, err = pcall(fn)
  if not ok and os.getenv("LOOM_SPEC_SHOW_BUGS") then
    io.stderr:write("\n[", why, "]\n  fails with: ", tostring(err), "\n")
  end
  if ok then
    error("fixed? this test passes now: remove its core_bug marker ("
      .. why .. ")", 2)
  end
  pending(why)
end

--- H.known_leak(why): called in a test whose leftovers (live tasks,
--- registry references, ...) are a known core limitation, so the leak check
--- of spec/setup.lua accepts them. Once the test leaves nothing behind, it
--- fails so that the marker gets removed.
function H.known_leak(why)
  leak_check.known_leak = why
end

-- Injected errors -----------------------------------------------------------

--- H.injection.disarmed: set it to true before debug.sethook() stops an
--- injection: an assignment is not a call, so the hook cannot fire between
--- the protected call and the reset.
H.injection = { disarmed = false }

--- H.inject(n): raise "injected" at the n-th call event of the running
--- coroutine (where out of memory could be raised), once.
function H.inject(n)
  local count = 0
  local injection = H.injection
  injection.disarmed = false
  debug.sethook(function()
    if injection.disarmed then return end
    count = count + 1
    if count == n then
      debug.sethook()
      error("injected", 0)
    end
  end, "c")
end

-- Child programs and the shell ------------------------------------------

--- H.root: the repository's absolute path (the directory holding spec/).
H.root = debug.getinfo(1, "S").source:gsub("^@", "")
  :gsub("/?spec/helpers%.lua$", "")
if H.root == "" or H.root == "." then H.root = os.getenv("PWD") end
if H.root:sub(1, 1) ~= "/" then H.root = os.getenv("PWD") .. "/" .. H.root end

--- H.build: the build directory, relative to H.root.
H.build = os.getenv("LOOM_BUILD_DIR") or "build"

--- H.q(s) -> s quoted for sh.
function H.q(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

--- H.sh(cmd) -> cmd's output (stdout and stderr), whether it succeeded.
function H.sh(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1", "r"))
  local out = p:read("a")
  local ok = p:close()
  return out, ok == true
end

--- H.lua_env() -> "env LUA_PATH=... LUA_CPATH=..." (shell words) that make a
--- child lua5.4 load this checkout's loom.
function H.lua_env()
  return "env LUA_PATH=" .. H.q(H.root .. "/lua/?.lua;" .. H.root
    .. "/lua/?/init.lua;;") .. " LUA_CPATH=" .. H.q(H.root .. "/" .. H.build
    .. "/?.so;;")
end

--- H.read_file(path) -> the file's bytes.
function H.read_file(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

--- H.write_file(path, s): replaces the file's bytes with s.
function H.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- H.loom_script(src) -> the path of a new temporary .lua file holding
--- `local loom = require("loom")` then src, for a child lua5.4 to run.
function H.loom_script(src)
  local path = os.tmpname() .. ".lua"
  local f = assert(io.open(path, "w"))
  f:write('local loom = require("loom")\n', src)
  f:close()
  return path
end

--- H.assert_no_child_leftovers(): in an after_each of the specs that run
--- children or pipes; no child is running and no pipe stream, listener or
--- file is open or closing (after a short settle).
function H.assert_no_child_leftovers()
  local core = require("loom.core")
  loom.run(function()
    loom.sleep(0.005)
    luassert.equal(0, core.process_stats().running)
    local st = core.pipe_stats()
    luassert.same({ 0, 0, 0, 0 }, { st.streams, st.listeners, st.closing,
      st.files })
  end)
end

return H
