-- OpenComputers: tenant hosts (kind 'byo') report more about themselves than
-- fleet hosts, can be revoked by their tenant, and hold secrets for their jobs.
ALTER TABLE hosts ADD COLUMN os TEXT;
ALTER TABLE hosts ADD COLUMN os_release TEXT;
ALTER TABLE hosts ADD COLUMN arch TEXT;
ALTER TABLE hosts ADD COLUMN hostname TEXT;
-- JSON: what a host-mode agent said of itself (user, Node version, terminal support, file root).
ALTER TABLE hosts ADD COLUMN agent_info TEXT;
-- Why the host is in `error` (or was revoked); NULL otherwise.
ALTER TABLE hosts ADD COLUMN status_reason TEXT;
ALTER TABLE hosts ADD COLUMN revoked_at TEXT;
CREATE INDEX hosts_org ON hosts (org_id, created_at);

CREATE TABLE oc_secrets (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  -- NULL: a tenant-wide secret, given to every host of the organization.
  host_id TEXT REFERENCES hosts(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  description TEXT,
  -- AES-GCM ciphertext and IV, base64, bound to the secret's id; the key is ENV_ENCRYPTION_KEY.
  ciphertext TEXT NOT NULL,
  iv TEXT NOT NULL,
  -- UTF-8 bytes of the value, for the per-scope limit (a host's whole set travels to its agent in one message).
  value_bytes INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
-- Names are unique per scope: the organization's own, and each host's.
CREATE UNIQUE INDEX oc_secrets_scope_name ON oc_secrets (org_id, COALESCE(host_id, ''), name);
