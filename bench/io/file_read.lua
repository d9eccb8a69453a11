-- Read a file in 64 KiB chunks with loom.open_file; prints MB/s.
-- Args: PATH
local loom = require("loom")
local path = assert(arg[1], "usage: file_read.lua PATH")
loom.run(function()
  local t0 = loom.now()
  local f <close> = loom.open_file(path, "rb")
  local n = 0
  while true do
    local chunk = f:read(65536)
    if chunk == nil then break end
    n = n + #chunk
  end
  local dt = loom.now() - t0
  print(("loom file_read %d bytes %.3f s %.1f MB/s peak_rss_kb=%s"):format(n,
    dt, n / dt / 1e6, io.open("/proc/self/status"):read("a")
      :match("VmHWM:%s*(%d+)")))
end)
