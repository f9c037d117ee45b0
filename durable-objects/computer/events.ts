/**
 * What a computer tells its organization's event log (schema/events.ts):
 * status changes with the reason, exec and terminal sessions starting and
 * ending, snapshots. Events leave through the object's outbox, so none is
 * lost to a failed call; the computer's own SSE stream is the log filtered
 * to this computer.
 */
import type { Env } from '../../worker/env.ts';
import type { NewEvent, StatusReason } from '../../schema/events.ts';
import { unwrap } from '../../schema/errors.ts';
import { EventOutbox } from '../events/outbox.ts';
import type { ComputerRecord } from './record.ts';
import type { LifecycleEvent, Status } from './state-table.ts';
import type { ProcObserver } from '../exec/proc-manager.ts';
import type { ProcKind } from '../exec/proc-table.ts';

/** Why a status changed, with what else is worth knowing (an error message, the new region). */
export interface Why {
  reason: StatusReason;
  message?: string;
  details?: Record<string, unknown>;
}

/** Events that start an operation; the reason given then is also the reason of its outcome. */
const OPERATIONS: ReadonlySet<LifecycleEvent> = new Set(['start', 'stop', 'restart', 'move', 'restore', 'delete']);

/** The reason a transition gets when its caller named none (pure). */
export function reasonFor(event: LifecycleEvent, pending: Why | undefined): Why {
  switch (event) {
    case 'provisioned':
      return pending?.reason === 'restored' ? pending : { reason: 'provisioned' };
    case 'started':
    case 'stopped':
    case 'restarted':
      return pending ?? { reason: 'requested' };
    case 'moved':
      return { reason: 'moved' };
    case 'restored':
      return { reason: 'restored', ...(pending?.details && { details: pending.details }) };
    case 'exited':
      return { reason: 'exited' };
    case 'failed':
      return { reason: 'failed' };
    case 'lost':
      return { reason: 'lost' };
    default:
      return { reason: 'requested' };
  }
}

export const startsOperation = (event: LifecycleEvent): boolean => OPERATIONS.has(event);

/** How the event log names each kind of process. */
const KIND: Record<ProcKind, string> = { stream: 'stream', ws: 'socket', terminal: 'terminal', sync: 'sync', job: 'job' };
const familyOf = (kind: ProcKind) => (kind === 'terminal' ? 'terminal' : 'exec');

/** Commands longer than this are cut in events (the whole command is the caller's to keep). */
const COMMAND_CHARS = 1024;
export const clip = (command: string): string => (command.length > COMMAND_CHARS ? `${command.slice(0, COMMAND_CHARS)}…` : command);

export class ComputerEvents {
  private readonly outbox: EventOutbox;

  constructor(
    ctx: DurableObjectState,
    env: Env,
    private readonly record: () => ComputerRecord | null,
  ) {
    this.outbox = new EventOutbox(
      ctx.storage.sql,
      () => `computer:${this.record()?.id ?? ctx.id.toString()}`,
      async (batch) => {
        // Before the record is loaded there is no organization yet: the send is tried again shortly.
        const org = this.record()?.org_id;
        if (!org) throw new Error('the computer record is not loaded yet');
        unwrap(await env.ORG_EVENTS.get(env.ORG_EVENTS.idFromName(org)).publish(batch));
      },
    );
  }

  /** computer.<status>, with the status before and why. */
  status(previous: Status, status: Status, why: Why): void {
    this.emit(`computer.${status}`, { status, previous_status: previous, reason: why.reason, ...(why.message && { message: why.message }), ...why.details });
  }

  /** Any other event about this computer; `refs` adds what else it is about (session_id, snapshot_id). */
  emit(type: string, data: Record<string, unknown>, refs: Record<string, string> = {}): void {
    const rec = this.record();
    if (!rec) return;
    const event: NewEvent = {
      type,
      refs: { computer_id: rec.id, ...refs },
      workspace_id: rec.workspace_id,
      project_id: rec.project_id,
      data,
      at: Date.now(),
    };
    this.outbox.emit(event);
  }

  /**
   * exec.started / exec.ended for commands (streamed, over a socket, sync),
   * terminal.started / terminal.ended for terminals; `session_id` names one.
   */
  readonly sessions: ProcObserver = {
    started: (row, params) => {
      // A sync exec runs its command as `bash -c <command>`: the command is what the caller sent.
      const command = row.kind === 'sync' && params.argv?.length === 3 ? params.argv[2] : params.command;
      const what = command !== undefined ? { command: clip(command) } : { argv: (params.argv ?? []).map(clip) };
      const data = row.kind === 'terminal' ? { session_id: row.proc_id, shell: params.argv?.[0] ?? null } : { session_id: row.proc_id, kind: KIND[row.kind], ...what };
      this.emit(`${familyOf(row.kind)}.started`, data, { session_id: row.proc_id });
    },
    ended: (row, outcome) => {
      const how = outcome.kind === 'exit'
        ? { exit_code: outcome.exit.exit_code, signal: outcome.exit.signal, timed_out: outcome.exit.timed_out, duration_ms: Math.round(outcome.exit.duration_ms) }
        : { error: outcome.message };
      this.emit(`${familyOf(row.kind)}.ended`, { session_id: row.proc_id, ...(row.kind !== 'terminal' && { kind: KIND[row.kind] }), ...how }, { session_id: row.proc_id });
    },
  };

  /** Sends what is waiting now (before the object's storage goes away with its computer). */
  flush(): Promise<boolean> {
    return this.outbox.flush();
  }
}
