-- A tiny `make -j2`: run a list of shell commands with at most two at a
-- time and a timeout each, and report every failure together in one
-- ErrorGroup (a failing job does not stop the others).
local loom = require("loom")

local jobs = {
  { name = "compile a", cmd = "sleep 0.05; echo a.o" },
  { name = "compile b", cmd = "sleep 0.05; echo b.o" },
  { name = "lint", cmd = "echo 'style: line too long' >&2; exit 2" },
  { name = "slow test", cmd = "sleep 10" },
  { name = "link", cmd = "echo app" },
}
local MAX_JOBS, TIMEOUT = 2, 0.5

loom.run(function()
  local limiter = loom.capacity_limiter(MAX_JOBS)
  local outputs, failures = {}, {}
  local running, most = 0, 0
  loom.task_group(function(tg)
    for i, job in ipairs(jobs) do
      tg:start_soon(function()
        local _ <close> = limiter:acquire()   -- a slot until the end
        running = running + 1
        most = math.max(most, running)
        local ok, r = pcall(loom.fail_after, TIMEOUT, function()
          return loom.run_process(job.cmd)
        end)
        running = running - 1
        if ok then
          outputs[i] = r.stdout:gsub("\n$", "")
        else
          failures[#failures + 1] = { index = i, err = r }
        end
      end)
    end
  end)
  for i, job in ipairs(jobs) do
    print(("%-10s %s"):format(job.name, outputs[i] and "ok: " .. outputs[i]
      or "FAILED"))
  end
  print(("at most %d jobs ran at once"):format(most))
  table.sort(failures, function(a, b) return a.index < b.index end)
  local errs = {}
  for i, f in ipairs(failures) do errs[i] = f.err end
  local ok, eg = pcall(error, loom.ErrorGroup("some jobs failed", errs), 0)
  assert(not ok)
  print(("%d of %d jobs failed:"):format(#eg.errors, #jobs))
  for _, e in ipairs(eg.errors) do
    if loom.is(e, loom.CalledProcessError) then
      print(("  exit status %d, stderr: %s"):format(e.returncode,
        e.stderr:gsub("\n$", "")))
    elseif loom.is(e, loom.TimeoutError) then
      print(("  timed out after %.1f s (the child was killed)"):format(
        TIMEOUT))
    else
      print("  " .. tostring(e))
    end
  end
end)
