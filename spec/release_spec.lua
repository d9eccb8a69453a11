-- make release-check: one version number everywhere (csrc/loom.h,
-- require("loom"), the rockspecs, CHANGELOG.md). Runs the checker on the
-- repository, then on copies where one place disagrees.

local H = require("helpers")
local root, q, sh = H.root, H.q, H.sh

local function check(dir)
  return sh("cd " .. q(dir) .. " && " .. H.lua_env() .. " lua5.4 "
    .. q(root .. "/tools/release_check.lua"))
end

local function loom_version_of(dir)
  return H.read_file(dir .. "/csrc/loom.h")
    :match('#define LOOM_VERSION "([^"]+)"')
end

describe("release-check", function()
  it("passes on the repository", function()
    local out, ok = check(root)
    assert.is_true(ok, out)
    assert.equal("release-check: version "
      .. loom_version_of(root) .. " everywhere\n", out)
  end)

  local tmp
  before_each(function()
    tmp = select(1, sh("mktemp -d")):gsub("%s+$", "")
    sh("mkdir -p " .. q(tmp .. "/csrc") .. " && cp "
      .. q(root .. "/csrc/loom.h") .. " " .. q(tmp .. "/csrc/")
      .. " && cp -r " .. q(root .. "/rockspec") .. " "
      .. q(root .. "/CHANGELOG.md") .. " " .. q(root .. "/LICENSE") .. " "
      .. q(root .. "/README.md") .. " " .. q(tmp) .. " && mkdir "
      .. q(tmp .. "/docs") .. " && cp " .. q(root .. "/docs/api.md") .. " "
      .. q(tmp .. "/docs/"))
  end)
  after_each(function()
    if tmp:match("^/tmp/") then sh("rm -rf " .. q(tmp)) end
  end)

  local function edit(file, from, to)
    local path = tmp .. "/" .. file
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    local n
    s, n = s:gsub(from, to, 1)
    assert(n == 1, "no " .. from .. " in " .. file)
    f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
  end

  it("fails when the header says another version than the module", function()
    edit("csrc/loom.h", '#define LOOM_VERSION "[^"]+"',
      '#define LOOM_VERSION "9.9.9"')
    local out, ok = check(tmp)
    assert.is_false(ok)
    assert.truthy(out:find('loom.version is "', 1, true), out)
    assert.truthy(out:find("rockspec/loom-9.9.9-1.rockspec is missing", 1,
      true), out)
  end)

  it("fails when the rockspec's tag or version disagrees", function()
    local v = loom_version_of(root)
    local file = "rockspec/loom-" .. v .. "-1.rockspec"
    edit(file, 'tag = "v[^"]+"', 'tag = "v0.0.1"')
    local out, ok = check(tmp)
    assert.is_false(ok)
    assert.truthy(out:find('source.tag is "v0.0.1"', 1, true), out)
  end)

  it("fails when the docs quote another version", function()
    edit("README.md", "loom%-%d+%.%d+%.%d+%-1%.src%.rock",
      "loom-0.0.9-1.src.rock")
    edit("docs/api.md", '\n### loom%.version\n\nThe version string, `"[^"]+"`',
      '\n### loom.version\n\nThe version string, `"0.0.8"`')
    local out, ok = check(tmp)
    assert.is_false(ok)
    assert.truthy(out:find("README.md names loom-0.0.9-1.src.rock", 1, true),
      out)
    assert.truthy(out:find("the entry of loom.version says 0.0.8", 1, true),
      out)
  end)

  it("fails when CHANGELOG.md's newest release is another one", function()
    edit("CHANGELOG.md", "\n## %[Unreleased%]\n",
      "\n## [Unreleased]\n\n## [7.0.0] - 2030-01-01\n")
    local out, ok = check(tmp)
    assert.is_false(ok)
    assert.truthy(out:find("the newest release is 7.0.0", 1, true), out)
  end)
end)
