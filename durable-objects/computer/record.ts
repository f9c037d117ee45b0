/** What a ComputerObject keeps about its computer, and who may touch it. */
import type { Size } from '../../schema/sizes.ts';
import type { Isolation } from '../../schema/isolation.ts';
import type { Status } from './state-table.ts';
import { isoNow } from '../../worker/http/ids.ts';
import type { Why } from './events.ts';

export interface ComputerRecord {
  id: string;
  org_id: string;
  workspace_id: string;
  project_id: string;
  name: string;
  template_type: string;
  size: Size;
  vcpus: number;
  memory_mb: number;
  /** Which driver makes it; records made before VMs existed have none and are sandboxes. */
  isolation?: Isolation;
  /** Disk quota, GiB (absent on records made before quotas: the agent uses the size's default). */
  disk_gb?: number;
  selected_apps: string[];
  host_id: string;
  status: Status;
  /** Seconds of inactivity before the computer stops; 0 is never. */
  auto_stop: number;
  /** The desktop's screen, WIDTHxHEIGHT (absent in records made before desktops: the default). */
  resolution?: string;
  /** Source computer whose disk the new one copies, until provisioning is done. */
  clone_from?: string;
  /** While stopping: the stop keeps the computer's memory (a VM), so the next start resumes it. */
  keep_memory?: boolean;
  /** Stopped with its memory kept: the next start resumes it. */
  memory_kept?: boolean;
  /** Snapshot whose disk the new one copies, until provisioning is done. */
  restore_snapshot?: string;
  /** While restoring a snapshot in place: which one. */
  restoring_snapshot?: string;
  /** While moving: the host the disk is being copied to, whose agent may connect as the target. */
  moving_to_host_id?: string;
  /** Why the operation under way (starting, stopping…) began; its outcome is logged with the same reason. */
  pending_why?: Why;
  /** Why the computer is in its status, when that needs saying (GET computer's `status_reason`). */
  status_reason?: string | null;
  /** Boots (provision, start, restart) begun since the last one that succeeded. */
  boot_attempts?: number;
  /** In `error`: whether starting it again can help (`boot`), or only deletion (`disk`, `provision`). */
  broken?: 'boot' | 'disk' | 'provision';
}

/** The tenant scope a route hands to the object: another organization gets 404, an out-of-scope credential 403. */
export interface Caller {
  org_id: string;
  workspace_ids: string[] | null;
  project_ids: string[] | null;
  /** The API key behind the caller's credential (Principal.credential_id); null when none. */
  credential_id: string | null;
}

export function callerAccess(caller: Caller, rec: ComputerRecord | null): 'ok' | 'not_found' | 'forbidden' {
  if (!rec || caller.org_id !== rec.org_id) return 'not_found';
  if (caller.workspace_ids && !caller.workspace_ids.includes(rec.workspace_id)) return 'forbidden';
  if (caller.project_ids && !caller.project_ids.includes(rec.project_id)) return 'forbidden';
  return 'ok';
}

/** Records the address a boot reported (the computer object's `ip_address`). */
export async function mirrorAddress(db: D1Database, id: string, ip: string | null): Promise<void> {
  await db.prepare('UPDATE computers SET ip_address = ? WHERE id = ?').bind(ip, id).run();
}

export async function mirrorMemoryKept(db: D1Database, id: string, kept: boolean): Promise<void> {
  await db.prepare('UPDATE computers SET memory_kept = ? WHERE id = ?').bind(kept ? 1 : 0, id).run();
}

/** Copies the status and its reason into D1, where lists and reads find them. */
export async function mirrorStatus(db: D1Database, id: string, status: Status, reason: string | null): Promise<void> {
  await db.prepare('UPDATE computers SET status = ?, status_reason = ?, updated_at = ? WHERE id = ?').bind(status, reason, isoNow(), id).run();
}
