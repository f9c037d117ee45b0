/**
 * What every driver does the same way once it holds a connection to a
 * computer's guest agent: run a command, start or re-attach a streamed
 * process, and turn guest failures into driver errors. Drivers differ in how
 * they reach the guest (a unix socket, a virtio-serial channel), not in this.
 */
import type { Duplex } from 'node:stream';
import { FS_RESPONSES, type ComputerEvent, type FileStream, type FsRequest, type WatchProducers } from '../../schema/guest.ts';
import type { ExecRunParams, ExecRunResult, ProcStartParams, StreamOffsets } from '../../schema/protocol.ts';
import { GuestError, type GuestClient } from '../guest-client.ts';
import { openGuestFile, openGuestTcp } from '../relay/guest-tcp.ts';
import { RelayTargetError } from '../relay/target-error.ts';
import { DriverError, type FsAnswer, type StreamProcess, type WatchHandle } from './driver.ts';

/** How long one file operation may take in the guest: a recursive copy or delete of a large tree takes a while. */
const FS_TIMEOUT_MS = 10 * 60_000;

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
    output_limit: params.output_limit,
    ordered: params.ordered,
  });
  await handle.started;
  return handle;
}

/** One file operation, done by the guest as `user`. */
export async function guestFs(guest: GuestClient, request: FsRequest): Promise<FsAnswer> {
  const { data } = await guest.request({ op: 'fs', request }, { timeoutMs: FS_TIMEOUT_MS });
  return FS_RESPONSES[request.op].parse(data);
}

/** Starts a watch in the guest; its event batches go to `onEvents` until the handle's stop(). */
export async function guestWatch(guest: GuestClient, watchId: string, producers: WatchProducers, onEvents: (events: ComputerEvent[]) => void): Promise<WatchHandle> {
  const listener = (w: string, events: ComputerEvent[]) => {
    if (w === watchId) onEvents(events);
  };
  guest.on('watch', listener);
  try {
    const { data } = await guest.request({ op: 'watch', watch: watchId, ...producers }, { timeoutMs: 30_000 });
    return {
      unavailable: data.unavailable,
      stop: async () => {
        guest.off('watch', listener);
        await guest.request({ op: 'unwatch', watch: watchId }, { timeoutMs: 10_000 }).catch(() => undefined);
      },
    };
  } catch (err) {
    guest.off('watch', listener);
    throw err;
  }
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
    // The message is the host's own words; what the guest said goes to the log only (GuestError).
    if (err.code === 'BAD_REQUEST') return new DriverError('BAD_REQUEST', err.message, err.guestText);
    // What a file operation's path said (the code; the object names the path it asked about).
    if (err.code === 'NO_SUCH_PATH' || err.code === 'FORBIDDEN' || err.code === 'CONFLICT' || err.code === 'NO_SPACE') return new DriverError(err.code, err.message, err.guestText);
    return new DriverError('FAILED', `guest agent: ${err.message}`, err.guestText);
  }
  return err instanceof DriverError ? err : new DriverError('FAILED', String(err));
}

/** How a driver finds a computer's guest. */
export interface GuestLocator {
  /** Throws a DriverError when the computer has no disk on this host. */
  requireDisk(id: string): unknown;
  /** Whether computer `id` runs on this host now. */
  running(id: string): boolean;
  /** The guest of the running computer `id`; undefined (or null) when it does not run. */
  connect(id: string): Promise<GuestClient | null | undefined> | undefined;
}

/**
 * Everything a driver does through a running computer's guest, the same for
 * every driver: composed by each with how it finds the guest.
 */
export class GuestOps {
  private readonly at: GuestLocator;

  constructor(at: GuestLocator) {
    this.at = at;
  }

  async setEnv(id: string, env: Record<string, string>): Promise<void> {
    this.at.requireDisk(id);
    const guest = await this.at.connect(id);
    // A stopped computer gets its environment from the spec when it starts.
    if (guest) await guest.setEnv(env);
  }

  exec(id: string, params: ExecRunParams): Promise<ExecRunResult> {
    return this.on(id, (guest) => guestExec(guest, params));
  }

  spawn(id: string, params: ProcStartParams, window: number): Promise<StreamProcess> {
    return this.on(id, (guest) => guestSpawn(guest, params, window));
  }

  attach(id: string, procId: string, offsets: StreamOffsets, window: number): Promise<StreamProcess | null> {
    return this.on(id, (guest) => guestAttach(guest, procId, offsets, window));
  }

  fs(id: string, request: FsRequest): Promise<FsAnswer> {
    return this.on(id, (guest) => guestFs(guest, request));
  }

  watch(id: string, watchId: string, producers: WatchProducers, onEvents: (events: ComputerEvent[]) => void): Promise<WatchHandle> {
    return this.on(id, (guest) => guestWatch(guest, watchId, producers, onEvents));
  }

  async connectTcp(id: string, port: number): Promise<Duplex> {
    return openGuestTcp(await this.forRelay(id), port);
  }

  async openFile(id: string, request: FileStream): Promise<Duplex> {
    return openGuestFile(await this.forRelay(id), request);
  }

  /** The running computer's guest; NOT_RUNNING when it does not run. */
  async guestOf(id: string): Promise<GuestClient> {
    this.at.requireDisk(id);
    const guest = await this.at.connect(id);
    if (!guest) throw new DriverError('NOT_RUNNING', `computer ${id} is not running`);
    return guest;
  }

  /** Runs `fn` on the guest, its failures in the driver's words. */
  private async on<T>(id: string, fn: (guest: GuestClient) => Promise<T>): Promise<T> {
    const guest = await this.guestOf(id);
    try {
      return await fn(guest);
    } catch (err) {
      throw guestFailure(id, err, () => !this.at.running(id));
    }
  }

  /** The guest for a relayed stream; `unreachable` when there is none. */
  private async forRelay(id: string): Promise<GuestClient> {
    try {
      return await this.guestOf(id);
    } catch (err) {
      throw new RelayTargetError('unreachable', err instanceof Error ? err.message : String(err));
    }
  }
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

  /**
   * Starts `begin` under the lock and holds the lock until what it began is
   * done (its `done` settles): a disk being read for a move keeps everything
   * else off the computer meanwhile.
   */
  hold<T extends { done: Promise<unknown> }>(id: string, begin: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
      void this.run(id, async () => {
        let begun: T;
        try {
          begun = begin();
        } catch (err) {
          reject(err);
          return;
        }
        resolve(begun);
        await begun.done.catch(() => undefined);
      });
    });
  }
}
