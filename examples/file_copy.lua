-- Copy a file in 1 MiB chunks with loom's files, printing progress, while
-- another task keeps running: the disk work happens in libuv's thread
-- pool, so the copy never stalls the other tasks.
--
--   lua5.4 examples/file_copy.lua SRC DST
--
-- Without arguments it makes a 16 MiB file in a temporary directory,
-- copies it, checks the copy and removes both.
local loom = require("loom")

local CHUNK = 1024 * 1024

local function copy(src, dst, on_progress)
  local input <close> = loom.open_file(src, "rb")
  local output <close> = loom.open_file(dst, "wb")
  local total = input:stat().size
  local done = 0
  while true do
    local chunk = input:read(CHUNK)
    if chunk == nil then break end
    output:write(chunk)
    done = done + #chunk
    on_progress(done, total)
  end
  return done
end

loom.run(function()
  local src, dst, tmp = arg[1], arg[2], nil
  if src == nil then
    tmp = loom.fs.mkdtemp("/tmp/loom-copy-")
    src, dst = tmp .. "/source.bin", tmp .. "/copy.bin"
    local f <close> = loom.open_file(src, "wb")
    for i = 1, 16 do f:write(string.char(64 + i):rep(CHUNK)) end
  end
  local ticks = 0
  local copied
  loom.task_group(function(tg)
    tg:start_soon(function()
      while true do
        ticks = ticks + 1
        loom.sleep(0)
      end
    end)
    local last = 0
    copied = copy(src, dst, function(done, total)
      local pct = total > 0 and done * 100 // total or 100
      if pct // 25 ~= last // 25 then
        last = pct
        print(("progress: %3d%% (%d of %d MiB)"):format(pct, done // CHUNK,
          total // CHUNK))
      end
    end)
    tg:cancel()
  end)
  print(("copied %d bytes; the other task ran meanwhile: %s"):format(copied,
    tostring(ticks > 0)))
  local same = loom.fs.read_file(src) == loom.fs.read_file(dst)
  print("contents match: " .. tostring(same))
  if tmp then
    loom.fs.unlink(src)
    loom.fs.unlink(dst)
    loom.fs.rmdir(tmp)
  end
end)
