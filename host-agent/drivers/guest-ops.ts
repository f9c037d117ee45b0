/**
 * What every driver does the same way once it holds a connection to a
 * computer's guest agent: run a command, start or re-attach a streamed
 * process, and turn guest failures into driver errors. Drivers differ in how
 * they reach the guest (a unix socket, a virtio-serial channel), not in this.
 */
import type { ExecRunParams, ExecRunResult, ProcStartParams, StreamOffsets } from '../../schema/protocol.ts';
import { GuestError, type GuestClient } from '../guest-client.ts';
import { DriverError, type StreamProcess } from './driver.ts';

export async function guestExec(guest: GuestClient, params: ExecRunParams): Promise<ExecRunResult> {
  const { result, output } = await guest.exec(
    { command: params.command, timeout_s: params.timeout_s, cwd: params.cwd, env: params.env, max_output_bytes: params.max_output_bytes },
    params.stdin === undefined ? undefined : Buffer.from(params.stdin, 'utf8'),
  );
  return {
    output: new TextDecoder('utf-8', { fatal: false }).decode(output),
    exit_code: result.exit_code,
    timed_out: result.timed_out,
    truncated: result.truncated,
    duration_ms: result.duration_ms,
  };
}

export async function guestSpawn(guest: GuestClient, params: ProcStartParams, window: number): Promise<StreamProcess> {
  const handle = guest.spawn({
    proc: params.proc_id,
    command: params.command,
    argv: params.argv,
    shell: params.shell,
    stdin: params.stdin,
    pty: params.tty,
    cwd: params.cwd,
    env: params.env,
    timeout_s: params.timeout_s,
    window,
    // The ring must hold everything not yet acknowledged, so a re-attach finds it.
    ring_bytes: 2 * window,
  });
  await handle.started;
  return handle;
}

/** Re-subscribes to a process; null when the guest no longer has it. */
export async function guestAttach(guest: GuestClient, procId: string, offsets: StreamOffsets, window: number): Promise<StreamProcess | null> {
  const handle = guest.attach(procId, offsets, { window });
  try {
    await handle.started;
  } catch (err) {
    if (err instanceof GuestError && err.code === 'NOT_FOUND') return null;
    throw err;
  }
  return handle;
}

/** A guest failure as the driver reports it; `stopped` says whether the computer is gone meanwhile. */
export function guestFailure(id: string, err: unknown, stopped: () => boolean): DriverError {
  if (err instanceof GuestError) {
    if (err.code === 'DISCONNECTED' && stopped()) return new DriverError('NOT_RUNNING', `computer ${id} stopped`);
    if (err.code === 'BAD_REQUEST') return new DriverError('BAD_REQUEST', err.message);
    return new DriverError('FAILED', `guest agent: ${err.message}`);
  }
  return err instanceof DriverError ? err : new DriverError('FAILED', String(err));
}

/** Serializes lifecycle operations per computer; exec and metrics do not wait. */
export class ComputerLocks {
  private readonly locks = new Map<string, Promise<unknown>>();

  run<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const run = prev.then(fn, fn);
    const tail = run.catch(() => undefined);
    this.locks.set(id, tail);
    void tail.then(() => {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    });
    return run;
  }
}
