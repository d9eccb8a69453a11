-- The first example of AnyIO's "Creating and managing tasks", in loom:
-- five tasks sleep one second each, concurrently; the group waits for all.
local loom = require("loom")

local function sometask(num)
  print("Task " .. num .. " running")
  loom.sleep(1)
  print("Task " .. num .. " finished")
end

local function main()
  loom.task_group(function(tg)
    for num = 0, 4 do
      tg:start_soon(sometask, num)
    end
  end)
  print("All tasks finished!")
end

loom.run(main)
