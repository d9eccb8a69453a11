-- A crawler-style example: every page found starts a task, but a capacity
-- limiter lets only MAX_FETCHES of them "download" at a time; the others
-- queue in FIFO order. The web is a table and a download is a sleep, so the
-- example needs no network and always prints the same thing.
local loom = require("loom")

local MAX_FETCHES = 3

local WEB = {
  ["/"] = { "/docs", "/blog", "/about", "/download" },
  ["/docs"] = { "/docs/tasks", "/docs/sync", "/docs/net", "/" },
  ["/docs/tasks"] = { "/docs/sync", "/docs/cancel" },
  ["/docs/sync"] = { "/docs/channels", "/docs/tasks" },
  ["/docs/net"] = { "/docs/channels" },
  ["/docs/cancel"] = {},
  ["/docs/channels"] = { "/blog/pipelines" },
  ["/blog"] = { "/blog/pipelines", "/blog/release-0.1" },
  ["/blog/pipelines"] = { "/docs/channels", "/missing" },
  ["/blog/release-0.1"] = { "/download" },
  ["/about"] = { "/" },
  ["/download"] = {},
}

local limiter = loom.capacity_limiter(MAX_FETCHES)
local fetching, most_at_once = 0, 0

-- Pretend to download a page, holding a token for the whole transfer (the
-- guard gives it back when fetch returns or raises).
local function fetch(url)
  local _ <close> = limiter:acquire()
  fetching = fetching + 1
  most_at_once = math.max(most_at_once, fetching)
  loom.sleep(0.005)
  fetching = fetching - 1
  local links = WEB[url]
  if links == nil then error(("404 %s"):format(url), 0) end
  return links
end

local function crawl(root)
  local seen, report = {}, {}
  loom.task_group(function(tg)
    local function visit(url, depth)
      local ok, links = pcall(fetch, url)
      if not ok then
        if loom.is_cancelled(links) then error(links, 0) end
        report[#report + 1] = ("%-20s depth %d  %s"):format(url, depth, links)
        return
      end
      report[#report + 1] = ("%-20s depth %d  %d link%s"):format(url, depth,
        #links, #links == 1 and "" or "s")
      for _, link in ipairs(links) do
        if not seen[link] then
          seen[link] = true
          tg:start_soon(visit, link, depth + 1)
        end
      end
    end
    seen[root] = true
    tg:start_soon(visit, root, 0)
  end)
  table.sort(report)
  return report
end

loom.run(function()
  local started = loom.now()
  local report = crawl("/")
  for _, line in ipairs(report) do print(line) end
  print(("%d pages, at most %d fetches at once (limit %d), %d tokens "
    .. "still borrowed"):format(#report, most_at_once, MAX_FETCHES,
      limiter.borrowed_tokens))
  -- 13 fetches of 5 ms with 3 at a time take at least 5 rounds.
  print("took at least 5 rounds: " .. tostring(loom.now() - started >= 0.025))
end)
