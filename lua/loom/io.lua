-- loom.io: installs the I/O beyond TCP (files, UDP, TLS, fd readiness) into
-- the loom table, one submodule per area.

local M = {}

function M.install(loom, core)
  require("loom.fs").install(loom, core)
end

return M
