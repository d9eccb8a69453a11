-- Reads the raw lines of bench/core/floors.sh on stdin
--   row workload impl N seconds ops_per_sec peak_rss_kb [extra=k=v,...]
-- and prints one markdown table: per (row, impl), the median of seconds
-- and of every extra value, and the spread (slowest / fastest run).
local order, groups = {}, {}
for line in io.lines() do
  local row, _, impl, n, secs, _, rss, extra =
    line:match("^(%S+) (%S+) (%S+) (%d+) ([%d.]+) ([%d.]+) (%d+)%s*(%S*)")
  if row then
    local key = row .. " " .. impl
    local g = groups[key]
    if not g then
      g = { row = row, impl = impl, n = tonumber(n), secs = {}, rss = {}, extra = {}, keys = {} }
      groups[key] = g
      order[#order + 1] = key
    end
    g.secs[#g.secs + 1] = tonumber(secs)
    g.rss[#g.rss + 1] = tonumber(rss)
    for k, v in extra:gsub("^extra=", ""):gmatch("([%w_]+)=([-%d.]+)") do
      if not g.extra[k] then g.extra[k] = {}; g.keys[#g.keys + 1] = k end
      table.insert(g.extra[k], tonumber(v))
    end
  end
end

local function median(t)
  local s = {}
  for i, v in ipairs(t) do s[i] = v end
  table.sort(s)
  local m = #s
  if m % 2 == 1 then return s[(m + 1) // 2] end
  return (s[m // 2] + s[m // 2 + 1]) / 2
end

print("| row | implementation | N | runs | median s | spread | peak RSS kB | per operation (medians) |")
print("|---|---|---:|---:|---:|---:|---:|---|")
for _, key in ipairs(order) do
  local g = groups[key]
  local lo, hi = math.huge, 0
  for _, v in ipairs(g.secs) do lo = math.min(lo, v); hi = math.max(hi, v) end
  local parts = {}
  for _, k in ipairs(g.keys) do parts[#parts + 1] = string.format("%s %.1f", k, median(g.extra[k])) end
  if #parts == 0 then parts[1] = string.format("ns_per_task %.1f", median(g.secs) * 1e9 / g.n) end
  print(string.format("| %s | %s | %d | %d | %.4f | %.2f× | %d | %s |", g.row, g.impl, g.n, #g.secs,
    median(g.secs), hi / lo, median(g.rss), table.concat(parts, ", ")))
end
