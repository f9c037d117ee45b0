-- OpenComputers AI agent sessions and inference clusters (docs/agents.md, docs/clusters.md).
-- A session's loop state and events live in its own Durable Object; this row is
-- what lists and gets read, updated by the object as the session moves on.
CREATE TABLE agent_sessions (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  host_id TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  task TEXT NOT NULL,
  status TEXT NOT NULL,
  model TEXT NOT NULL,
  max_turns INTEGER NOT NULL,
  turns_used INTEGER NOT NULL DEFAULT 0,
  steps_used INTEGER NOT NULL DEFAULT 0,
  tokens_used INTEGER NOT NULL DEFAULT 0,
  -- JSON: the tools the session has, and its budget {max_steps, max_tokens, timeout_ms}.
  tools TEXT NOT NULL,
  budget TEXT NOT NULL,
  end_reason TEXT,
  summary TEXT,
  error TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  completed_at TEXT
);
CREATE INDEX agent_sessions_host ON agent_sessions (host_id, created_at);
CREATE INDEX agent_sessions_org ON agent_sessions (org_id, created_at);

CREATE TABLE clusters (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  -- Unique across the deployment: it names the cluster's inference URL.
  slug TEXT NOT NULL UNIQUE,
  model TEXT NOT NULL,
  -- provisioning | active | stopped | error
  status TEXT NOT NULL,
  -- JSON array of the member hosts' ids, in the order given.
  host_ids TEXT NOT NULL,
  -- JSON {host_id: reason} for members in error; NULL when none is.
  member_errors TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX clusters_org ON clusters (org_id, created_at);
