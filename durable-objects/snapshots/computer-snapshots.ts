/**
 * A computer's snapshots, driven by its ComputerObject: taking one (the host
 * copies the disk, freezing a running computer's file system for the few
 * milliseconds of a copy-on-write copy), restoring one in place (the stopped
 * computer's disk becomes a copy of it), and the start of a new computer made
 * from one. The D1 row is the snapshot's record; progress goes to the event
 * log as `snapshot.progress` (served as `snapshot_progress` SSE events).
 */
import { fail, ok, type Result } from '../../schema/errors.ts';
import type { Env } from '../../worker/env.ts';
import type { AgentLink } from '../agent-link.ts';
import type { ComputerEvents, Why } from '../computer/events.ts';
import type { ComputerRecord } from '../computer/record.ts';
import { REFUSAL, type LifecycleEvent, type Status } from '../computer/state-table.ts';
import {
  MAX_SNAPSHOTS_PER_COMPUTER,
  countLiveSnapshots,
  deleteUnkeptSnapshots,
  getSnapshot,
  insertSnapshot,
  markSnapshotDeleted,
  setSnapshotStatus,
  type Snapshot,
} from './snapshot-rows.ts';

/** A copy-on-write copy takes milliseconds; a host without reflinks copies bytes, which can take minutes. */
const SNAPSHOT_MS = 10 * 60_000;
/** How long POST …/snapshots waits for the copy before answering `pending`. */
const ANSWER_WITHIN_MS = 2_000;

export type SnapshotOperation = 'create' | 'restore';

/** One step of an operation on a snapshot, as the progress stream shows it. */
export interface Progress {
  operation: SnapshotOperation;
  step: 'copying' | 'booting' | 'done' | 'failed';
  fraction: number;
  /** The snapshot's status as the step leaves it. */
  status: Snapshot['status'];
  message?: string;
  /** Restores: the computer the snapshot goes into. */
  target_computer_id?: string;
}

/** What the snapshots need of their ComputerObject. */
export interface SnapshotHost {
  readonly record: ComputerRecord | null;
  readonly link: AgentLink;
  readonly events: ComputerEvents;
  apply(event: LifecycleEvent, why?: Why): Promise<Status | null>;
  save(patch: Partial<ComputerRecord>): Promise<void>;
  waitUntil(p: Promise<unknown>): void;
}

export class ComputerSnapshots {
  constructor(
    private readonly host: SnapshotHost,
    private readonly env: Env,
  ) {}

  private get db(): D1Database {
    return this.env.DB;
  }

  /** snapshot.progress (and snapshot.<status> once an operation ends), with the snapshot as a ref. */
  progress(snapshotId: string, p: Progress): void {
    const data = { snapshot_id: snapshotId, ...p, progress: Math.round(p.fraction * 100) };
    this.host.events.emit('snapshot.progress', data, { snapshot_id: snapshotId });
  }

  /**
   * Takes a snapshot of a running or stopped computer: the row is `pending` at once, `ready` (with
   * its size) or `failed` once the host has copied the disk. Answers the row as it is after at most
   * ANSWER_WITHIN_MS; the copy goes on if it takes longer.
   */
  async create(rec: ComputerRecord, opts: { comment: string | null; keep: boolean }): Promise<Result<Snapshot>> {
    if (rec.status !== 'running' && rec.status !== 'stopped') return fail('INVALID_STATE_TRANSITION', 'computer must be running or stopped to take a snapshot');
    if (!this.host.link.socket()) return fail('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly");
    if ((await countLiveSnapshots(this.db, rec.id)) >= MAX_SNAPSHOTS_PER_COMPUTER) {
      return fail('CONFLICT', `a computer has at most ${MAX_SNAPSHOTS_PER_COMPUTER} snapshots; delete one first`);
    }
    const row = await insertSnapshot(this.db, {
      id: crypto.randomUUID(),
      org_id: rec.org_id,
      computer_id: rec.id,
      workspace_id: rec.workspace_id,
      project_id: rec.project_id,
      host_id: rec.host_id,
      comment: opts.comment,
      keep: opts.keep,
      source: { name: rec.name, template_type: rec.template_type, size: rec.size, selected_apps: rec.selected_apps, disk_gb: rec.disk_gb, resolution: rec.resolution, isolation: rec.isolation ?? 'sandbox' },
    });
    this.host.events.emit('snapshot.created', { snapshot_id: row.id, status: 'pending', comment: row.comment, computer_status: rec.status }, { snapshot_id: row.id });
    this.progress(row.id, { operation: 'create', step: 'copying', fraction: 0.1, status: 'pending' });
    const copied = this.copy(row);
    this.host.waitUntil(copied);
    const done = await Promise.race([copied, new Promise<null>((r) => setTimeout(() => r(null), ANSWER_WITHIN_MS))]);
    return ok(done ?? row);
  }

  /** Asks the host for the copy and records how it went; the row after. */
  private async copy(row: Snapshot): Promise<Snapshot> {
    const r = await this.host.link.request('computer.snapshot', { snapshot_id: row.id }, SNAPSHOT_MS);
    if (!r.ok) {
      const message = r.code === 'AGENT_UNAVAILABLE' ? 'the host agent went away while copying the disk; take the snapshot again' : r.message;
      const after = await setSnapshotStatus(this.db, row.id, 'failed', { error: message });
      this.progress(row.id, { operation: 'create', step: 'failed', fraction: 1, status: 'failed', message });
      this.host.events.emit('snapshot.failed', { snapshot_id: row.id, status: 'failed', error: message }, { snapshot_id: row.id });
      return after ?? { ...row, status: 'failed', error: message };
    }
    const after = await setSnapshotStatus(this.db, row.id, 'ready', { bytes: r.value.bytes });
    if (!after) {
      // Deleted while it was being copied: the copy goes too.
      await this.removeFromHost(row.host_id, [row.id]);
      return { ...row, status: 'deleted' };
    }
    this.progress(row.id, { operation: 'create', step: 'done', fraction: 1, status: 'ready' });
    this.host.events.emit('snapshot.ready', { snapshot_id: row.id, status: 'ready', rootfs_size_bytes: r.value.bytes }, { snapshot_id: row.id });
    await this.billing(row.org_id);
    return after;
  }

  /**
   * Restores a snapshot of this computer in place: the stopped computer is `restoring` while its
   * host makes its disk a copy of the snapshot, then `stopped` again with that disk. A failure
   * leaves the disk as it was. Answers once done.
   */
  async restoreInPlace(rec: ComputerRecord, snapshotId: string): Promise<Result<Snapshot>> {
    const s = await getSnapshot(this.db, rec.org_id, snapshotId);
    if (!s || s.computer_id !== rec.id) return fail('NOT_FOUND', 'snapshot not found');
    if (s.status !== 'ready') return fail('CONFLICT', `snapshot is ${s.status}; only a ready snapshot can be restored`);
    if (s.host_id !== rec.host_id) return fail('CONFLICT', 'the snapshot is on the host the computer was on before it moved; restore it into a new computer there');
    if (rec.status !== 'stopped') return fail('INVALID_STATE_TRANSITION', REFUSAL.restore);
    if (!this.host.link.socket()) return fail('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly");
    const why: Why = { reason: 'requested', details: { snapshot_id: s.id } };
    if (!(await this.host.apply('restore', why))) return fail('INVALID_STATE_TRANSITION', REFUSAL.restore);
    await this.host.save({ restoring_snapshot: s.id });
    await setSnapshotStatus(this.db, s.id, 'restoring');
    this.progress(s.id, { operation: 'restore', step: 'copying', fraction: 0.1, status: 'restoring', target_computer_id: rec.id });
    return this.finishRestore(s.id);
  }

  /** Asks the host to put the snapshot back and applies the outcome. */
  private async finishRestore(snapshotId: string): Promise<Result<Snapshot>> {
    const rec = this.host.record!;
    const r = await this.host.link.request('computer.snapshot_restore', { snapshot_id: snapshotId }, SNAPSHOT_MS);
    // Without an agent the computer stays `restoring`; the next attach finishes it (recover).
    if (!r.ok && r.code === 'AGENT_UNAVAILABLE') return r;
    const after = await setSnapshotStatus(this.db, snapshotId, 'ready');
    await this.host.save({ restoring_snapshot: undefined });
    if (!r.ok) {
      await this.host.apply('failed', { reason: 'failed', message: `restoring snapshot ${snapshotId}: ${r.message}` });
      this.progress(snapshotId, { operation: 'restore', step: 'failed', fraction: 1, status: 'ready', message: r.message, target_computer_id: rec.id });
      return r;
    }
    await this.host.apply('restored', { reason: 'restored', details: { snapshot_id: snapshotId } });
    this.progress(snapshotId, { operation: 'restore', step: 'done', fraction: 1, status: 'ready', target_computer_id: rec.id });
    this.host.events.emit('snapshot.restored', { snapshot_id: snapshotId, computer_id: rec.id, in_place: true }, { snapshot_id: snapshotId });
    return after ? ok(after) : fail('NOT_FOUND', 'snapshot not found');
  }

  /** An agent attached while a restore was under way: ask it again (a restore can be done twice). */
  async recover(): Promise<void> {
    const id = this.host.record?.restoring_snapshot;
    if (id) await this.finishRestore(id);
  }

  /** A new computer made from a snapshot was provisioned (or not): the snapshot's progress says so. */
  restoredInto(rec: ComputerRecord, snapshotId: string, outcome: Result<unknown>): void {
    if (outcome.ok) {
      this.progress(snapshotId, { operation: 'restore', step: 'done', fraction: 1, status: 'ready', target_computer_id: rec.id });
      this.host.events.emit('snapshot.restored', { snapshot_id: snapshotId, computer_id: rec.id, in_place: false }, { snapshot_id: snapshotId });
    } else if (outcome.code !== 'AGENT_UNAVAILABLE') {
      this.progress(snapshotId, { operation: 'restore', step: 'failed', fraction: 1, status: 'ready', message: outcome.message, target_computer_id: rec.id });
    }
  }

  /** Deletes one of this computer's snapshots (not while it is being restored). */
  async delete(rec: ComputerRecord, snapshotId: string): Promise<Result<true>> {
    const s = await getSnapshot(this.db, rec.org_id, snapshotId);
    if (!s || s.computer_id !== rec.id) return fail('NOT_FOUND', 'snapshot not found');
    if (s.status === 'restoring') return fail('CONFLICT', 'the snapshot is being restored; delete it once that is done');
    if (!(await markSnapshotDeleted(this.db, s.id))) return fail('NOT_FOUND', 'snapshot not found');
    await this.removeFromHost(s.host_id, [s.id]);
    this.host.events.emit('snapshot.deleted', { snapshot_id: s.id, status: 'deleted' }, { snapshot_id: s.id });
    return ok(true);
  }

  /** The computer is being deleted: its snapshots go too, except kept ones. */
  async computerDeleted(rec: ComputerRecord): Promise<void> {
    const rows = await deleteUnkeptSnapshots(this.db, rec.id);
    // Each on the host it was taken on (a computer that moved left its older ones behind).
    for (const hostId of new Set(rows.map((r) => r.host_id))) await this.removeFromHost(hostId, rows.filter((r) => r.host_id === hostId).map((r) => r.id));
    for (const { id } of rows) this.host.events.emit('snapshot.deleted', { snapshot_id: id, status: 'deleted', reason: 'computer_deleted' }, { snapshot_id: id });
  }

  private async removeFromHost(hostId: string, ids: string[]): Promise<void> {
    await removeSnapshotsFromHost(this.env, hostId, ids);
  }

  private async billing(orgId: string): Promise<void> {
    try {
      await this.env.ORG_EVENTS.get(this.env.ORG_EVENTS.idFromName(orgId)).snapshotsChanged(orgId);
    } catch (err) {
      console.error(`snapshot billing of ${orgId} not scheduled`, err);
    }
  }
}

/** Tells the host to remove snapshot copies (now if its agent is connected, else when it next says hello). */
export async function removeSnapshotsFromHost(env: Env, hostId: string, ids: string[]): Promise<void> {
  await env.HOST.get(env.HOST.idFromName(hostId)).deleteSnapshots(ids);
}
