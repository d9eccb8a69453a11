-- 8 CPU-bound jobs of about 100 ms each: run one after the other in one
-- task, then as 8 loom.to_thread calls at once. Prints
-- "<job ms> <sequential s> <threaded s> <speed-up> <cores obtained>", the
-- last being the process's CPU time over wall time in the threaded part
-- (what the machine actually gave us: 2.0 on an idle 2-core machine).
local loom = require("loom")
local JOBS = tonumber(arg[1]) or 8

-- The job: an integer hash loop, ITER iterations (no upvalues).
local function work(iter)
  local h = 0
  for i = 1, iter do h = (h * 31 + i) & 0xffffffff end
  return h
end

-- Calibrate ITER to about 100 ms on this machine.
local iter = 1000000
while true do
  local t0 = os.clock()
  work(iter)
  local dt = os.clock() - t0
  if dt > 0.05 then
    iter = math.floor(iter * 0.1 / dt)
    break
  end
  iter = iter * 2
end

local cores
local seq, par, job_ms = loom.run(function()
  loom.to_thread(work, 10)            -- start one worker before timing
  local t0 = loom.now()
  local expect
  for _ = 1, JOBS do expect = work(iter) end
  local t1 = loom.now()
  local c1 = os.clock()
  loom.task_group(function(tg)
    for _ = 1, JOBS do
      tg:start_soon(function()
        assert(loom.to_thread(work, iter) == expect)
      end)
    end
  end)
  local t2 = loom.now()
  cores = (os.clock() - c1) / (t2 - t1)
  return t1 - t0, t2 - t1, (t1 - t0) / JOBS * 1000
end)
print(("%.0f %.3f %.3f %.2f %.2f"):format(job_ms, seq, par, seq / par, cores))
