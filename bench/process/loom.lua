-- Process workloads for loom. Usage: lua5.4 loom.lua spawn N C | cat MB
-- Prints one line: "<workload> loom <N> <seconds> <rate>".
local loom = require("loom")
local what = arg[1]

if what == "spawn" then
  -- N runs of `true`, C at a time.
  local N, C = tonumber(arg[2]) or 1000, tonumber(arg[3]) or 16
  local secs
  loom.run(function()
    local next_i = 0
    local t0 = loom.now()
    loom.task_group(function(tg)
      for _ = 1, C do
        tg:start_soon(function()
          while next_i < N do
            next_i = next_i + 1
            loom.run_process({ "true" }, { stdin = "null", stdout = "null",
              stderr = "null" })
          end
        end)
      end
    end)
    secs = loom.now() - t0
  end)
  print(("spawn loom %d %.4f %.1f"):format(N, secs, N / secs))
elseif what == "cat" then
  -- MB megabytes through `cat`: write its stdin while reading its stdout.
  local MB = tonumber(arg[2]) or 200
  local chunk = string.rep("x", 1 << 20)
  local secs
  loom.run(function()
    local t0 = loom.now()
    local p <close> = loom.open_process({ "cat" }, { stderr = "inherit" })
    local got = 0
    loom.task_group(function(tg)
      tg:start_soon(function()
        for _ = 1, MB do p.stdin:send(chunk) end
        p.stdin:close()
      end)
      local out = p.stdout
      while true do
        local ok, data = pcall(out.receive, out, 65536)
        if not ok then break end
        got = got + #data
      end
    end)
    assert(got == MB << 20, "short read")
    p:wait()
    secs = loom.now() - t0
  end)
  print(("cat loom %d %.4f %.1f"):format(MB, secs, MB / secs))
end
