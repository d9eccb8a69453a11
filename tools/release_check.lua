-- tools/release_check.lua (make release-check): fails when loom's version
-- strings disagree. The version is LOOM_VERSION in csrc/loom.h; it must
-- also be what require("loom") reports (loom.version, loom._VERSION), the
-- version of rockspec/loom-<version>-1.rockspec (with the tag v<version>),
-- and the newest release heading of CHANGELOG.md. Run from the repository
-- root with LUA_PATH/LUA_CPATH naming ./lua and the build.

local problems = {}
local function bad(fmt, ...)
  problems[#problems + 1] = fmt:format(...)
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local header = read("csrc/loom.h") or ""
local version = header:match('\n#define LOOM_VERSION "([^"]+)"')
if not version then
  io.stderr:write("release-check: no LOOM_VERSION in csrc/loom.h\n")
  os.exit(1)
end
if not version:match("^%d+%.%d+%.%d+$") then
  bad("LOOM_VERSION %q is not MAJOR.MINOR.PATCH", version)
end
local major, minor, patch = version:match("^(%d+)%.(%d+)%.(%d+)")
for name, want in pairs({ LOOM_VERSION_MAJOR = major,
    LOOM_VERSION_MINOR = minor, LOOM_VERSION_PATCH = patch }) do
  local got = header:match("\n#define " .. name .. " (%d+)")
  if got and got ~= want then
    bad("csrc/loom.h: %s is %s, LOOM_VERSION says %s", name, got, want)
  end
end

local num = header:match("\n#define LOOM_VERSION_NUM (%d+)")
if num and major and tonumber(num) ~= major * 10000 + minor * 100 + patch then
  bad("csrc/loom.h: LOOM_VERSION_NUM is %s, LOOM_VERSION %s means %d", num,
    version, major * 10000 + minor * 100 + patch)
end

-- The module as built.
local ok, loom = pcall(require, "loom")
if not ok then
  bad("require('loom') failed: %s", tostring(loom))
else
  if loom.version ~= version then
    bad("loom.version is %q, LOOM_VERSION is %q", tostring(loom.version),
      version)
  end
  if loom._VERSION ~= "loom " .. version then
    bad("loom._VERSION is %q, expected %q", tostring(loom._VERSION),
      "loom " .. version)
  end
end

-- Rockspecs: the versioned one for this version, the scm one, and no
-- versioned rockspec for another version.
local function load_rockspec(path)
  local text = read(path)
  if not text then return nil end
  local env = {}
  local chunk, err = load(text, "@" .. path, "t", env)
  if not chunk then bad("%s: %s", path, err); return nil end
  local okr, e = pcall(chunk)
  if not okr then bad("%s: %s", path, tostring(e)); return nil end
  return env
end

local function check_common(path, spec)
  if spec.package ~= "loom" then bad("%s: package is not 'loom'", path) end
  if type(spec.source) ~= "table" or type(spec.source.url) ~= "string" then
    bad("%s: no source.url", path)
  end
  local d = spec.description or {}
  if d.license ~= "MIT" then bad("%s: description.license is not MIT", path) end
  if type(d.homepage) ~= "string" then
    bad("%s: no description.homepage", path)
  end
  if type(d.labels) ~= "table" or #d.labels == 0 then
    bad("%s: no description.labels", path)
  end
  local dirs = {}
  for _, dir in ipairs(spec.build and spec.build.copy_directories or {}) do
    dirs[dir] = true
  end
  if not (dirs.docs and dirs.types) then
    bad("%s: build.copy_directories must install docs and types", path)
  end
end

local vpath = ("rockspec/loom-%s-1.rockspec"):format(version)
local vspec = load_rockspec(vpath)
if not vspec then
  bad("%s is missing", vpath)
else
  check_common(vpath, vspec)
  if vspec.version ~= version .. "-1" then
    bad("%s: version is %q", vpath, tostring(vspec.version))
  end
  if vspec.source and vspec.source.tag ~= "v" .. version then
    bad("%s: source.tag is %q, expected %q", vpath,
      tostring(vspec.source.tag), "v" .. version)
  end
end
local spath = "rockspec/loom-scm-1.rockspec"
local sspec = load_rockspec(spath)
if not sspec then
  bad("%s is missing", spath)
else
  check_common(spath, sspec)
  if sspec.version ~= "scm-1" then bad("%s: version is not scm-1", spath) end
  if type(sspec.source) == "table" and type(sspec.source.tag) ~= "string" then
    bad("%s: no source.tag (the branch to build)", spath)
  end
end
local p = io.popen("ls rockspec")
for name in p:lines() do
  local v = name:match("^loom%-(.+)%-%d+%.rockspec$")
  if v and v ~= "scm" and v ~= version then
    bad("rockspec/%s is for version %s, LOOM_VERSION is %s", name, v, version)
  end
end
p:close()

-- CHANGELOG.md: the newest release heading is this version.
local changelog = read("CHANGELOG.md")
if not changelog then
  bad("CHANGELOG.md is missing")
else
  local newest
  for v in changelog:gmatch("\n## %[([^%]]+)%]") do
    if v ~= "Unreleased" then newest = v; break end
  end
  if newest ~= version then
    bad("CHANGELOG.md: the newest release is %s, LOOM_VERSION is %s",
      tostring(newest), version)
  end
end
if not read("LICENSE") then bad("LICENSE is missing") end

-- Versions quoted in the docs: rock file names in the README, the values of
-- loom.version and loom._VERSION in the reference.
for _, file in ipairs({ "README.md", "docs/api.md" }) do
  local text = read(file) or ""
  for v in text:gmatch("loom%-(%d+%.%d+%.%d+)%-%d+%.src%.rock") do
    if v ~= version then
      bad("%s names loom-%s-1.src.rock, LOOM_VERSION is %s", file, v, version)
    end
  end
  for v in text:gmatch("tag `v(%d+%.%d+%.%d+)`") do
    if v ~= version then
      bad("%s names the tag v%s, LOOM_VERSION is %s", file, v, version)
    end
  end
end
local api = read("docs/api.md") or ""
for name in ("version _VERSION"):gmatch("%S+") do
  local entry = api:match("\n### loom%." .. name .. "\n(.-)\n###")
  local v = entry and entry:match("(%d+%.%d+%.%d+)")
  if entry and v ~= version then
    bad("docs/api.md: the entry of loom.%s says %s, LOOM_VERSION is %s", name,
      tostring(v), version)
  end
end

if #problems > 0 then
  io.stderr:write("release-check: versions disagree:\n  ",
    table.concat(problems, "\n  "), "\n")
  os.exit(1)
end
print("release-check: version " .. version .. " everywhere")
