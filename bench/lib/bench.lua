-- Shared helpers for the Lua bench scripts (loom, luv, cqueues).
-- Every script prints exactly one line:
--   workload impl N seconds ops_per_sec peak_rss_kb [extra=k=v[,k=v]]
local B = {}

local ok, clock = pcall(require, "benchclock")
if not ok then error("bench: benchclock.so missing; run bash bench/setup.sh first", 0) end
B.now = clock.now -- monotonic wall clock, seconds (float)

-- A field of /proc/self/status in kB (VmRSS = now, VmHWM = peak).
function B.status_kb(field)
  local f = assert(io.open("/proc/self/status"))
  local text = f:read("a")
  f:close()
  return tonumber(text:match(field .. ":%s+(%d+)"))
end
function B.rss_kb() return B.status_kb("VmRSS") end

-- Resident memory after a full collection (for W5).
function B.settled_rss_kb()
  collectgarbage("collect")
  collectgarbage("collect")
  return B.rss_kb()
end

-- Positional integer argument i (default d).
function B.arg(i, d)
  local v = arg[i] and tonumber(arg[i])
  return v and math.tointeger(v) or d
end

-- The W4 delays in whole ms, 0..100, from minstd (Park-Miller), seed 42:
-- every implementation computes exactly the same list.
function B.delays_ms(n)
  local x, out, max = 42, {}, 0
  for i = 1, n do
    x = x * 48271 % 2147483647
    out[i] = x % 101
    if out[i] > max then max = out[i] end
  end
  return out, max
end

function B.report(workload, impl, n, seconds, extra)
  local line = string.format("%s %s %d %.6f %.1f %d", workload, impl, n, seconds,
    n / seconds, B.status_kb("VmHWM"))
  if extra then line = line .. " extra=" .. extra end
  io.write(line, "\n")
end

return B
