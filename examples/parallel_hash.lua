-- Hash many chunks of data on all cores: each chunk goes to a worker thread
-- with loom.to_thread (a pure-Lua FNV-1a, CPU-bound), a limiter keeps one
-- call per core in flight, and a progress line is redrawn as results come
-- back. The workers run their own Lua states, so the hashing function may
-- use no upvalue: its data travels as arguments, its results come back as
-- copies.
local loom = require("loom")

local CHUNKS = 16
local SIZE = 64 * 1024
local CORES = 2

-- Deterministic test data: chunk i is bytes of a small LCG seeded with i.
local function make_chunk(i, size)
  local parts, block, x = {}, {}, i
  for j = 1, size do
    x = (x * 1103515245 + 12345) & 0x7fffffff
    block[#block + 1] = x >> 16 & 0xff
    if #block == 4096 or j == size then
      parts[#parts + 1] = string.char(table.unpack(block))
      block = {}
    end
  end
  return table.concat(parts)
end

-- FNV-1a, 32 bits. Runs in a worker: no upvalues, only its arguments.
local function fnv1a(data)
  local h = 2166136261
  for k = 1, #data do
    h = ((h ~ data:byte(k)) * 16777619) & 0xffffffff
  end
  return h, #data
end

loom.run(function()
  local chunks = {}
  for i = 1, CHUNKS do chunks[i] = make_chunk(i, SIZE) end

  local hashes, done = {}, 0
  local cores = loom.capacity_limiter(CORES)
  io.write(("hashing %d chunks on %d worker threads\n"):format(CHUNKS, CORES))
  loom.task_group(function(tg)
    for i = 1, CHUNKS do
      tg:start_soon(function()
        local h, n = loom.to_thread_with({ limiter = cores }, fnv1a, chunks[i])
        assert(n == #chunks[i])
        hashes[i] = h
        done = done + 1
        local bar = ("#"):rep(done) .. ("."):rep(CHUNKS - done)
        io.write(("\r[%s] %2d/%d"):format(bar, done, CHUNKS))
        io.flush()
      end)
    end
  end)
  io.write("\n")

  -- The same hashes computed here, on one core, must agree.
  local all = {}
  for i = 1, CHUNKS do
    local h = fnv1a(chunks[i])
    assert(h == hashes[i], "chunk " .. i .. " differs")
    all[i] = ("%08x"):format(hashes[i])
  end
  print(("first chunk: %s, last chunk: %s"):format(all[1], all[CHUNKS]))
  print(("hash of all hashes: %08x"):format(fnv1a(table.concat(all))))
end)
