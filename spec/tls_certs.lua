-- spec/tls_certs.lua: a throwaway PKI made with the `openssl` command for
-- the TLS specs, examples and benchmarks (nothing that expires is
-- committed). EC P-256 keys keep it fast.
--
--   local certs = require("tls_certs").make()   -- once per process
--   certs.dir, certs.ca, certs.server_cert, certs.server_key, ...

local M = {}

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  if not ok then error("tls_certs: command failed: " .. cmd, 2) end
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local made

--- make() -> table of paths (created once, removed by cleanup()).
function M.make()
  if made then return made end
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p '" .. dir .. "'")
  local function p(name) return dir .. "/" .. name end
  local key = "openssl ecparam -name prime256v1 -genkey -noout -out "
  -- CA
  sh(key .. p("ca.key"))
  sh(("openssl req -x509 -new -key %s -out %s -days 2 -subj "
    .. "'/CN=loom test CA' -addext basicConstraints=critical,CA:TRUE "
    .. "-addext keyUsage=critical,keyCertSign,cRLSign")
    :format(p("ca.key"), p("ca.pem")))
  -- A minimal `openssl ca` set-up, for start and end dates.
  write(p("ca.cnf"), ([[
[ ca ]
default_ca = test_ca
[ test_ca ]
database = %s
new_certs_dir = %s
serial = %s
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
[ leaf ]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth, clientAuth
]]):format(p("index.txt"), dir, p("serial")))
  write(p("index.txt"), "")
  write(p("serial"), "1000\n")
  local function leaf(name, cn, san, dates)
    sh(key .. p(name .. ".key"))
    sh(("openssl req -new -key %s -out %s -subj '/CN=%s'%s")
      :format(p(name .. ".key"), p(name .. ".csr"), cn,
        san and (" -addext subjectAltName=" .. san) or ""))
    sh(("openssl ca -batch -config %s -extensions leaf -cert %s -keyfile "
      .. "%s -in %s -out %s -notext %s")
      :format(p("ca.cnf"), p("ca.pem"), p("ca.key"), p(name .. ".csr"),
        p(name .. ".pem"), dates or "-days 2"))
  end
  leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1,IP:::1")
  leaf("other", "other.example", "DNS:other.example")
  leaf("client", "loom client", nil)
  leaf("expired", "localhost", "DNS:localhost,IP:127.0.0.1",
    "-startdate 20200101000000Z -enddate 20200102000000Z")
  -- Self-signed, for the right name.
  sh(key .. p("self.key"))
  sh(("openssl req -x509 -new -key %s -out %s -days 2 -subj '/CN=localhost' "
    .. "-addext subjectAltName=DNS:localhost,IP:127.0.0.1")
    :format(p("self.key"), p("self.pem")))
  made = {
    dir = dir, ca = p("ca.pem"),
    server_cert = p("server.pem"), server_key = p("server.key"),
    other_cert = p("other.pem"), other_key = p("other.key"),
    client_cert = p("client.pem"), client_key = p("client.key"),
    expired_cert = p("expired.pem"), expired_key = p("expired.key"),
    self_cert = p("self.pem"), self_key = p("self.key"),
  }
  return made
end

function M.cleanup()
  if made then
    os.execute("rm -rf '" .. made.dir .. "'")
    made = nil
  end
end

return M
