-- The install path a user takes: `make rock` packs a .src.rock from a git
-- repository (here a snapshot of the working tree, tagged like a release),
-- `luarocks install` builds it into a fresh tree, and loom is required from
-- another directory, with nothing of this checkout on the path. Also checks
-- that the reference docs and the editor stubs are installed with the rock.

local H = require("helpers")
local root, q, sh = H.root, H.q, H.sh

local function must(cmd)
  local out, ok = sh(cmd)
  if not ok then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

local read = H.read_file

local function version()
  return read(root .. "/csrc/loom.h"):match('#define LOOM_VERSION "([^"]+)"')
end

describe("installing the rock", function()
  local tmp

  setup(function()
    tmp = must("mktemp -d"):gsub("%s+$", "")
  end)

  teardown(function()
    if tmp and tmp:match("^/tmp/") then sh("rm -rf " .. q(tmp)) end
  end)

  it("packs from a tag, installs into a fresh tree and runs an example",
    function()
    local v = version()
    assert.is_string(v)
    local src, dist, tree = tmp .. "/src", tmp .. "/dist", tmp .. "/tree"
    -- A snapshot of the working tree (tracked and new files) as a git
    -- repository with the release tag, as a user's clone would have it.
    -- (Without git metadata, as in an unpacked tarball: every file but the
    -- builds.)
    must("mkdir -p " .. q(src) .. " && cd " .. q(root)
      .. " && if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then"
      .. " git ls-files -co --exclude-standard | while IFS= read -r f; do"
      .. " [ -e \"$f\" ] && cp --parents \"$f\" " .. q(src) .. "; done;"
      .. " else tar -c --exclude='./build*' --exclude=./dist --exclude=./.git"
      .. " --exclude=./bench/out . | tar -x -C " .. q(src) .. "; fi; true")
    must("cd " .. q(src) .. " && git init -q && git add -A"
      .. " && git -c user.name=loom -c user.email=loom@localhost"
      .. " commit -qm snapshot && git tag v" .. v)
    must("make -s -C " .. q(root) .. " rock REPO_URL="
      .. q("git+file://" .. src) .. " ROCK_DIR=" .. q(dist))
    local rock = dist .. "/loom-" .. v .. "-1.src.rock"
    assert.is_truthy(io.open(rock, "rb"))
    must("cd " .. q(tmp) .. " && luarocks --lua-version=5.4 --tree "
      .. q(tree) .. " install " .. q(rock))

    local rockdir = ("%s/lib/luarocks/rocks-5.4/loom/%s-1"):format(tree, v)
    assert.is_truthy(io.open(rockdir .. "/docs/api.md", "rb"))
    assert.is_truthy(io.open(rockdir .. "/types/loom.lua", "rb"))

    -- Another directory, a path naming only the fresh tree.
    must("mkdir -p " .. q(tmp .. "/elsewhere"))
    local env = "cd " .. q(tmp .. "/elsewhere") .. " && env"
      .. " LUA_PATH=" .. q(tree .. "/share/lua/5.4/?.lua;" .. tree
        .. "/share/lua/5.4/?/init.lua")
      .. " LUA_CPATH=" .. q(tree .. "/lib/lua/5.4/?.so")
      .. " LOOM_EXAMPLE_FAST=1 lua5.4 "
    local where = must(env .. "-e " .. q("local l = require('loom'); "
      .. "print(l._VERSION); print(package.searchpath('loom', package.path)); "
      .. "print(package.searchpath('loom.core', package.cpath))"))
    assert.equal(("loom %s\n%s/share/lua/5.4/loom/init.lua\n"
      .. "%s/lib/lua/5.4/loom/core.so\n"):format(v, tree, tree), where)
    local out = must(env .. q(root .. "/examples/hello_tasks.lua"))
    assert.equal(read(root .. "/examples/expected/hello_tasks.txt"), out)
  end)
end)
