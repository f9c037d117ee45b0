/** A snapshot as the API shows it (issue 11's shape; `tenant_id` is the organization). */
import type { Snapshot } from '../../durable-objects/snapshots/snapshot-rows.ts';

export const snapshotView = (s: Snapshot) => ({
  id: s.id,
  computer_id: s.computer_id,
  tenant_id: s.org_id,
  workspace_id: s.workspace_id,
  project_id: s.project_id,
  comment: s.comment,
  status: s.status,
  error: s.error,
  rootfs_size_bytes: s.rootfs_size_bytes,
  keep: s.keep,
  created_at: s.created_at,
  updated_at: s.updated_at,
});
