/**
 * The computer lifecycle as a pure table: status x event -> next status.
 * The ComputerObject persists the next status before it acts, and only the
 * agent's answers produce the "done" events (provisioned, started, stopped…),
 * so a status is never assumed.
 */
export const STATUSES = ['provisioning', 'running', 'stopping', 'stopped', 'starting', 'restarting', 'moving', 'restoring', 'deleting', 'error'] as const;
export type Status = (typeof STATUSES)[number];

export type LifecycleEvent =
  | 'provisioned'
  | 'start'
  | 'started'
  | 'stop'
  | 'stopped'
  | 'restart'
  | 'restarted'
  | 'exited'
  | 'failed'
  | 'gave_up'
  | 'lost'
  | 'move'
  | 'moved'
  | 'restore'
  | 'restored'
  | 'delete';

type Table = { [S in Status]: Partial<Record<LifecycleEvent, Status>> };

const TABLE: Table = {
  // `lost`: the host no longer has the computer's disk. `gave_up`: its boot failed too many times in a row.
  provisioning: { provisioned: 'running', failed: 'error', gave_up: 'error', delete: 'deleting' },
  running: { stop: 'stopping', restart: 'restarting', exited: 'stopped', lost: 'error', delete: 'deleting' },
  stopping: { stopped: 'stopped', failed: 'running', exited: 'stopped', lost: 'error', delete: 'deleting' },
  stopped: { start: 'starting', move: 'moving', restore: 'restoring', lost: 'error', delete: 'deleting' },
  starting: { started: 'running', failed: 'stopped', gave_up: 'error', exited: 'stopped', lost: 'error', delete: 'deleting' },
  restarting: { restarted: 'running', failed: 'stopped', gave_up: 'error', exited: 'stopped', lost: 'error', delete: 'deleting' },
  // The disk is copied to another host while the computer stays stopped; a failure leaves it where it was.
  moving: { moved: 'stopped', failed: 'stopped', delete: 'deleting' },
  // A snapshot is copied back as the disk while the computer stays stopped; a failure leaves the disk as it was.
  restoring: { restored: 'stopped', failed: 'stopped', delete: 'deleting' },
  // A computer whose boot kept failing may be started again once its cause is fixed (the object
  // refuses that when the disk is gone or provisioning failed: those can only be deleted).
  error: { start: 'starting', lost: 'error', delete: 'deleting' },
  deleting: { delete: 'deleting' },
};

/** The status after `event`, or null when the event is not allowed in `status`. */
export function transition(status: Status, event: LifecycleEvent): Status | null {
  return TABLE[status][event] ?? null;
}

/** The spec's 409 message for a user action refused in the current status. */
export const REFUSAL: Record<'start' | 'stop' | 'restart' | 'clone' | 'resize' | 'move' | 'restore', string> = {
  start: 'computer cannot be started from its current status',
  stop: 'computer cannot be stopped from its current status',
  restart: 'computer must be running to restart',
  clone: 'computer must be running to clone',
  resize: 'computer must be stopped to resize',
  move: 'computer must be stopped to move',
  restore: 'computer must be stopped to restore a snapshot in place',
};

/** Operations that need the computer in one exact status, checked without changing it. */
export const REQUIRES: Record<'clone' | 'resize' | 'move' | 'restore' | 'exec', Status> = {
  clone: 'running',
  resize: 'stopped',
  move: 'stopped',
  restore: 'stopped',
  exec: 'running',
};

/** Statuses a start answers at once, without doing anything: the computer runs or is on its way there. */
export const ALREADY_STARTING: ReadonlySet<Status> = new Set(['running', 'provisioning', 'starting', 'restarting']);

/** Statuses in which an operation is under way; a reconnecting agent is asked to finish it. */
export const IN_FLIGHT: ReadonlySet<Status> = new Set(['provisioning', 'stopping', 'starting', 'restarting', 'deleting']);
