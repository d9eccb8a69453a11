-- A three-stage pipeline joined by bounded channels. Stage 1 reads "lines",
-- stage 2 is three parser tasks sharing one receive end (each owns a clone
-- and closes it when done), stage 3 prints the results in input order.
-- A full channel blocks the stage feeding it (backpressure), and closing the
-- last send end of a channel ends the `for ... in` loop of the next stage.
local loom = require("loom")

local LINES = {
  "3 4", "10 20", "7 35", "100 1", "12 12", "5 8", "64 36", "9 91",
  "2 2", "40 2",
}
local BUFFER = 2  -- items each channel may hold before senders wait

-- Stage 1: send one job per line, then close (ends stage 2's loops).
local function produce(jobs)
  local out <close> = jobs
  for i, text in ipairs(LINES) do
    out:send({ seq = i, text = text })
  end
end

-- Stage 2: parse and add. Uneven work makes results arrive out of order.
local function parse(jobs, results)
  local inp <close> = jobs
  local out <close> = results
  for job in inp do
    local a, b = job.text:match("^(%d+) (%d+)$")
    loom.sleep(0.001 * (job.seq % 3))
    out:send({ seq = job.seq,
               line = ("%3s + %-3s = %d"):format(a, b, a + b) })
  end
end

-- Stage 3: put results back in input order and print them.
local function write(results)
  local pending, next_seq, peak = {}, 1, 0
  for r in results do
    pending[r.seq] = r.line
    while pending[next_seq] do
      print(pending[next_seq])
      pending[next_seq] = nil
      next_seq = next_seq + 1
    end
    peak = math.max(peak, results:statistics().peak_buffer_used)
  end
  return next_seq - 1, peak
end

loom.run(function()
  local jobs_send, jobs_recv = loom.channel(BUFFER)
  local res_send, res_recv = loom.channel(BUFFER)
  local written, peak
  loom.task_group(function(tg)
    tg:start_soon(produce, jobs_send)
    for _ = 1, 3 do
      tg:start_soon(parse, jobs_recv:clone(), res_send:clone())
    end
    -- The workers hold clones; close the originals so that the channels
    -- end when the last worker closes its clones.
    jobs_recv:close()
    res_send:close()
    written, peak = write(res_recv)
  end)
  print(("%d lines through 3 stages; no channel held more than %d items: %s")
    :format(written, BUFFER, tostring(peak <= BUFFER)))
end)
