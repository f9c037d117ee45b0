-- The relay: exposed ports that carry traffic, and OpenComputers tunnels.

-- Protected ports keep their access token (AES-GCM under ENV_ENCRYPTION_KEY, the
-- tenant reads it back on the record); `wake` lets a request start a stopped computer.
ALTER TABLE computer_ports ADD COLUMN access_token_ciphertext TEXT;
ALTER TABLE computer_ports ADD COLUMN access_token_iv TEXT;
ALTER TABLE computer_ports ADD COLUMN wake INTEGER NOT NULL DEFAULT 0;

-- A computer's slug names its preview hosts ({port}-{slug}.sandbox.{domain}), so it
-- is unique: the name's slug and the first 8 characters of the id. Existing rows get
-- the label their URLs already used, so no URL changes.
UPDATE computers SET slug = slug || '-' || substr(id, 1, 8);
CREATE UNIQUE INDEX computers_slug ON computers (slug);

-- Tunnels expose a port on a tenant's own host at /t/{slug} and {slug}.t.{domain}.
CREATE TABLE tunnels (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  slug TEXT NOT NULL UNIQUE,
  target_port INTEGER NOT NULL CHECK (target_port BETWEEN 1 AND 65535),
  auth_mode TEXT NOT NULL CHECK (auth_mode IN ('public', 'tenant_only', 'password')),
  -- PBKDF2-SHA256: "pbkdf2$<iterations>$<salt b64>$<hash b64>"; only for password mode.
  password_hash TEXT,
  enabled INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX tunnels_host ON tunnels (host_id, created_at);
