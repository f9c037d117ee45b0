-- What clients read on a computer besides the computers page's fields:
-- metadata (a string map the caller sets), who may open its preview URLs,
-- and its address inside its own network (reported by its host at each boot).
ALTER TABLE computers ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE computers ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public';
ALTER TABLE computers ADD COLUMN ip_address TEXT;
CREATE INDEX computers_org_status ON computers (org_id, status);

-- Point-in-time copies of a computer's disk, kept on the host that made them.
-- A snapshot is deleted with its computer unless `keep` is set; a kept one
-- outlives it (computer_id then names a computer that is gone).
CREATE TABLE snapshots (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
  computer_id TEXT NOT NULL,
  workspace_id TEXT NOT NULL,
  project_id TEXT NOT NULL,
  host_id TEXT NOT NULL,
  comment TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'ready', 'restoring', 'failed', 'deleted')),
  error TEXT,
  rootfs_size_bytes INTEGER,
  keep INTEGER NOT NULL DEFAULT 0,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE INDEX snapshots_computer ON snapshots (computer_id, created_at);
CREATE INDEX snapshots_org ON snapshots (org_id, created_at);
