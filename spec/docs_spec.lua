-- make docs-check: docs/api.md and types/*.lua cover every public name of
-- require("loom"), stubs match the functions, and no doc links outside the
-- repository. Runs the checker on the repository, then on copies of its
-- docs and stubs with one thing broken, and checks the problem is named.

local H = require("helpers")
local root, q, sh = H.root, H.q, H.sh
local read, write = H.read_file, H.write_file

local function check(dir)
  return sh(H.lua_env() .. " lua5.4 " .. q(root .. "/tools/docs_check.lua")
    .. " " .. q(dir))
end

describe("docs-check", function()
  it("passes on the repository", function()
    local out, ok = check(root)
    assert.is_true(ok, out)
    assert.matches("^docs%-check: %d+ public names documented and stubbed, "
      .. "links stay in the repository\n$", out)
  end)

  local tmp
  before_each(function()
    tmp = select(1, sh("mktemp -d")):gsub("%s+$", "")
    sh("cp -r " .. q(root .. "/docs") .. " " .. q(root .. "/types") .. " "
      .. q(root .. "/README.md") .. " " .. q(root .. "/CHANGELOG.md") .. " "
      .. q(root .. "/LICENSE") .. " " .. q(tmp) .. " && mkdir " .. q(tmp
      .. "/bench") .. " && cp " .. q(root .. "/bench/RESULTS.md") .. " "
      .. q(root .. "/bench/results.png") .. " " .. q(root .. "/bench/README.md")
      .. " " .. q(tmp .. "/bench"))
  end)
  after_each(function()
    if tmp:match("^/tmp/") then sh("rm -rf " .. q(tmp)) end
  end)

  local function edit(file, from, to)
    local s = read(tmp .. "/" .. file)
    local i, j = s:find(from, 1, true)
    assert(i, "no " .. from .. " in " .. file)
    write(tmp .. "/" .. file, s:sub(1, i - 1) .. to .. s:sub(j + 1))
  end

  local function fails_with(text)
    local out, ok = check(tmp)
    assert.is_false(ok, out)
    assert.truthy(out:find(text, 1, true), "expected " .. text .. " in:\n"
      .. out)
  end

  it("fails on a public name without an entry", function()
    edit("docs/api.md", "### loom.sleep_until(deadline)", "### sleep until")
    fails_with("docs/api.md: no entry for loom.sleep_until (add a heading "
      .. "`### loom.sleep_until(...)`)")
  end)

  it("fails on a method and a field without an entry", function()
    edit("docs/api.md", "### TaskGroup:start_soon(fn, ...)", "")
    edit("docs/api.md", "### CancelScope.shield", "")
    fails_with("no entry for TaskGroup:start_soon")
    fails_with("no entry for CancelScope.shield")
  end)

  it("fails on an entry for a name that does not exist", function()
    edit("docs/api.md", "### loom.now()", "### loom.now()\n\n### loom.later()")
    fails_with("loom.later is not a public name of loom")
  end)

  it("fails on two entries for one name", function()
    edit("docs/api.md", "### loom.now()", "### loom.now()\n\n### loom.now()")
    fails_with("a second entry for loom.now")
  end)

  it("checks a submodule's functions like the module's", function()
    edit("docs/api.md", "### loom.fs.rmdir(path)", "### rmdir")
    edit("docs/api.md", "### loom.fs.unlink(path)",
      "### loom.fs.unlink(path)\n\n### loom.fs.remove(path)")
    edit("types/io.lua", "function loom.fs.rename(from, to) end",
      "function loom.fs.rename(from) end")
    fails_with("docs/api.md: no entry for loom.fs.rmdir (add a heading "
      .. "`### loom.fs.rmdir(...)`)")
    fails_with("loom.fs.remove is not a public name of loom")
    fails_with("loom.fs.rename has 1 parameter, the function has 2")
  end)

  it("fails on a link outside the repository", function()
    edit("README.md", "# loom",
      "# loom\n\nSee [the contract](../shared/API.md).")
    fails_with("README.md:3: links to ../shared/API.md, outside the repository")
  end)

  it("fails on an absolute link and on a broken anchor", function()
    edit("docs/guide.md", "# loom guide", "# loom guide\n[x](/etc/passwd) "
      .. "[y](api.md#no-such-heading)")
    fails_with("links to /etc/passwd, outside the repository")
    fails_with("docs/api.md has no heading for the anchor #no-such-heading")
  end)

  it("fails on an example that does not compile", function()
    edit("docs/api.md", "local deadline = loom.now() + 5",
      "local deadline = loom.now() +")
    fails_with("the example does not compile")
  end)

  it("fails on a public name without a stub", function()
    edit("types/loom.lua", "function loom.sleep_forever() end", "")
    fails_with("types/: no stub for loom.sleep_forever")
  end)

  it("fails on a stub for a name that does not exist", function()
    edit("types/loom.lua", "function TaskGroup:cancel(reason) end",
      "function TaskGroup:cancel(reason) end\nfunction TaskGroup:stop() end")
    fails_with("TaskGroup:stop is not a public name of loom")
  end)

  it("fails on a stub with the wrong number of parameters", function()
    -- A Lua function: compared with the function itself.
    edit("types/loom.lua", "function loom.gather(fns, opts) end",
      "function loom.gather(fns) end")
    fails_with("loom.gather has 1 parameter, the function has 2")
  end)

  it("compares a C function's stub with its docs heading", function()
    edit("types/loom.lua", "function loom.sleep(delay) end",
      "function loom.sleep(delay, extra) end")
    fails_with("loom.sleep has 2 parameters, its docs/api.md heading has 1")
  end)

  it("fails on a blocking function's stub without ---@async", function()
    edit("types/loom.lua", "---@async\n---@param delay number\nfunction "
      .. "loom.sleep(delay) end", "---@param delay number\nfunction "
      .. "loom.sleep(delay) end")
    fails_with("loom.sleep blocks (docs/api.md:")
    fails_with("says so) but its stub has no ---@async")
  end)

  it("fails on a stub file that does not load", function()
    write(tmp .. "/types/broken.lua", "---@meta\nfunction loom.x(\n")
    fails_with("types/broken.lua does not load")
  end)

  it("accepts stubs of another area in their own file", function()
    write(tmp .. "/types/extra.lua", table.concat({
      "---@meta",
      "---@class loom.Event",
      "local Ev = {}",
      "---@async",
      "function Ev:wait() end",
      "function loom.now() end",
    }, "\n") .. "\n")
    local out, ok = check(tmp)
    assert.is_true(ok, out)
  end)
end)
