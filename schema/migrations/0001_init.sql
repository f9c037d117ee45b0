-- Tenants, keys, hosts, computers and the request bookkeeping the API needs.
CREATE TABLE organizations (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  slug TEXT NOT NULL UNIQUE,
  credits REAL NOT NULL DEFAULT 0,
  -- General API limit per workspace per minute; NULL means the documented 300.
  rate_limit_per_minute INTEGER,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE workspaces (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  slug TEXT NOT NULL,
  name TEXT NOT NULL,
  is_default INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (org_id, slug)
);

CREATE TABLE projects (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  workspace_id TEXT NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
  slug TEXT NOT NULL,
  name TEXT NOT NULL,
  is_default INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  UNIQUE (workspace_id, slug)
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  -- sha256 of the whole key, hex; the key itself is shown once and never stored.
  key_hash TEXT NOT NULL UNIQUE,
  -- First characters, for people to tell keys apart ("msk_live_ab12").
  key_prefix TEXT NOT NULL,
  mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
  -- JSON arrays of ids; NULL means every workspace / project of the organization.
  workspace_ids TEXT,
  project_ids TEXT,
  created_at TEXT NOT NULL,
  last_used_at TEXT,
  revoked_at TEXT
);

CREATE TABLE hosts (
  id TEXT PRIMARY KEY,
  -- NULL for fleet hosts run by the operator; set for OpenComputers hosts.
  org_id TEXT REFERENCES organizations(id) ON DELETE CASCADE,
  kind TEXT NOT NULL CHECK (kind IN ('fleet', 'byo')),
  name TEXT NOT NULL,
  region TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',
  status TEXT NOT NULL CHECK (status IN ('pending', 'online', 'offline', 'error', 'revoked')),
  key_hash TEXT NOT NULL UNIQUE,
  key_prefix TEXT NOT NULL,
  agent_version TEXT,
  drivers TEXT NOT NULL DEFAULT '[]',
  cpus INTEGER,
  memory_mb INTEGER,
  last_seen_at TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

CREATE TABLE computers (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  workspace_id TEXT NOT NULL REFERENCES workspaces(id),
  project_id TEXT NOT NULL REFERENCES projects(id),
  owner_user_id TEXT,
  name TEXT NOT NULL,
  slug TEXT NOT NULL,
  template_type TEXT NOT NULL,
  size TEXT NOT NULL,
  vcpus INTEGER NOT NULL,
  memory_mb INTEGER NOT NULL,
  status TEXT NOT NULL,
  host_id TEXT REFERENCES hosts(id),
  region TEXT NOT NULL,
  external_workspace_id TEXT,
  external_user_id TEXT,
  external_project_id TEXT,
  selected_apps TEXT NOT NULL DEFAULT '[]',
  settings TEXT NOT NULL DEFAULT '{}',
  ai_config TEXT NOT NULL DEFAULT '{}',
  agent_session_id TEXT,
  resolution TEXT NOT NULL DEFAULT '1280x720',
  auto_stop INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX computers_org ON computers (org_id, created_at);
CREATE INDEX computers_host ON computers (host_id);

CREATE TABLE computer_env (
  computer_id TEXT NOT NULL REFERENCES computers(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  -- AES-GCM ciphertext and IV, base64; the key is the ENV_ENCRYPTION_KEY secret.
  ciphertext TEXT NOT NULL,
  iv TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (computer_id, name)
);

CREATE TABLE computer_ports (
  computer_id TEXT NOT NULL REFERENCES computers(id) ON DELETE CASCADE,
  port INTEGER NOT NULL,
  visibility TEXT NOT NULL CHECK (visibility IN ('public', 'private', 'protected')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (computer_id, port)
);

CREATE TABLE credit_transactions (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  amount REAL NOT NULL,
  reason TEXT NOT NULL,
  computer_id TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX credit_transactions_org ON credit_transactions (org_id, created_at);

CREATE TABLE idempotency_keys (
  org_id TEXT NOT NULL,
  key TEXT NOT NULL,
  -- sha256 over method, path and body: the same key with another request is a 422.
  fingerprint TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('running', 'done')),
  status INTEGER,
  body TEXT,
  content_type TEXT,
  created_at TEXT NOT NULL,
  expires_at TEXT NOT NULL,
  PRIMARY KEY (org_id, key)
);
