/**
 * Snapshot rows in D1 (migrations 0006, 0011): the record of every snapshot,
 * read by the routes, written by the ComputerObject that takes and restores
 * them. A deleted snapshot's row stays with status `deleted` until the
 * organization goes; lists leave it out.
 */
import type { SnapshotRow, SnapshotStatus } from '../../schema/db.ts';
import { SnapshotSource } from '../../schema/api-snapshots.ts';
import { isoNow } from '../../worker/http/ids.ts';

/** At most this many snapshots (not deleted) per computer. */
export const MAX_SNAPSHOTS_PER_COMPUTER = 20;

export interface Snapshot extends Omit<SnapshotRow, 'source' | 'keep'> {
  keep: boolean;
  source: SnapshotSource | null;
}

type RawRow = Omit<SnapshotRow, 'keep'> & { keep: number };

export function parseSnapshot(r: RawRow): Snapshot {
  let source: SnapshotSource | null = null;
  try {
    const parsed = SnapshotSource.safeParse(JSON.parse(r.source));
    source = parsed.success ? parsed.data : null;
  } catch {
    /* an old row */
  }
  return { ...r, keep: r.keep === 1, source };
}

export async function getSnapshot(db: D1Database, orgId: string, id: string): Promise<Snapshot | null> {
  const r = await db.prepare(`SELECT * FROM snapshots WHERE id = ? AND org_id = ? AND status != 'deleted'`).bind(id, orgId).first<RawRow>();
  return r ? parseSnapshot(r) : null;
}

export async function insertSnapshot(
  db: D1Database,
  s: Pick<Snapshot, 'id' | 'org_id' | 'computer_id' | 'workspace_id' | 'project_id' | 'host_id' | 'comment' | 'keep'> & { source: SnapshotSource },
): Promise<Snapshot> {
  const now = isoNow();
  const r = await db
    .prepare(
      `INSERT INTO snapshots (id, org_id, computer_id, workspace_id, project_id, host_id, comment, status, keep, source, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?) RETURNING *`,
    )
    .bind(s.id, s.org_id, s.computer_id, s.workspace_id, s.project_id, s.host_id, s.comment, s.keep ? 1 : 0, JSON.stringify(s.source), now, now)
    .first<RawRow>();
  return parseSnapshot(r!);
}

/** Sets a snapshot's status (and its error or size); a deleted snapshot stays deleted. Returns the row after, or null. */
export async function setSnapshotStatus(
  db: D1Database,
  id: string,
  status: Exclude<SnapshotStatus, 'deleted'>,
  extra: { error?: string | null; bytes?: number } = {},
): Promise<Snapshot | null> {
  const r = await db
    .prepare(
      `UPDATE snapshots SET status = ?, error = ?, rootfs_size_bytes = COALESCE(?, rootfs_size_bytes), updated_at = ?
       WHERE id = ? AND status != 'deleted' RETURNING *`,
    )
    .bind(status, extra.error ?? null, extra.bytes ?? null, isoNow(), id)
    .first<RawRow>();
  return r ? parseSnapshot(r) : null;
}

export async function countLiveSnapshots(db: D1Database, computerId: string): Promise<number> {
  const r = await db.prepare(`SELECT COUNT(*) AS n FROM snapshots WHERE computer_id = ? AND status != 'deleted'`).bind(computerId).first<{ n: number }>();
  return r?.n ?? 0;
}

/** Marks a snapshot deleted; false when it was not there (or deleted already). */
export async function markSnapshotDeleted(db: D1Database, id: string): Promise<boolean> {
  const r = await db.prepare(`UPDATE snapshots SET status = 'deleted', updated_at = ? WHERE id = ? AND status != 'deleted'`).bind(isoNow(), id).run();
  return r.meta.changes > 0;
}

/** Marks a deleted computer's snapshots deleted, except kept ones; the ids marked. */
export async function deleteUnkeptSnapshots(db: D1Database, computerId: string): Promise<{ id: string; host_id: string }[]> {
  const { results } = await db
    .prepare(`UPDATE snapshots SET status = 'deleted', updated_at = ? WHERE computer_id = ? AND keep = 0 AND status != 'deleted' RETURNING id, host_id`)
    .bind(isoNow(), computerId)
    .all<{ id: string; host_id: string }>();
  return results;
}

/** Snapshots a host should keep on its disks: every one not deleted or failed. */
export async function snapshotsKeptOn(db: D1Database, hostId: string): Promise<string[]> {
  const { results } = await db.prepare(`SELECT id FROM snapshots WHERE host_id = ? AND status NOT IN ('deleted', 'failed')`).bind(hostId).all<{ id: string }>();
  return results.map((r) => r.id);
}
