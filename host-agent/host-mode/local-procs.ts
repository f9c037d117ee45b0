/**
 * The machine itself as the relay's driver (host mode): processes started
 * directly, as the user who runs the agent, in that user's home unless the
 * request names a cwd (a relative one is taken from the home). Every process
 * gets the agent's environment without the agent's own settings (HANGAR_*,
 * the host key among them), then the host's secrets, then the request's env.
 * Ended processes stay until the server forgets them, so a re-attach after a
 * dropped connection still finds their output and exit.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { ProcStartParams, StreamOffsets } from '../../schema/protocol.ts';
import { DriverError, type StreamProcess } from '../drivers/driver.ts';
import { LocalProcess } from './local-process.ts';
import { ptyPlan } from './pty.ts';

/** An ended process the server never forgot is dropped after this long. */
const ENDED_KEPT_MS = 60 * 60_000;

export interface LocalProcsOptions {
  home: string;
  /** `script`, when terminals can be made here. */
  script: string | null;
  /** The secrets the server last sent, as environment variables. */
  secrets(): Record<string, string>;
}

/** The agent's environment without its own settings, for the processes it starts. */
export function childEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(base).filter(([k]) => !k.startsWith('HANGAR_')));
}

export class LocalProcs {
  private readonly procs = new Map<string, LocalProcess>();
  private readonly baseEnv = childEnv();
  private readonly opts: LocalProcsOptions;

  constructor(opts: LocalProcsOptions) {
    this.opts = opts;
  }

  /** Ids of every process the agent still has. */
  ids(): string[] {
    this.prune();
    return [...this.procs.keys()];
  }

  running(): number {
    return [...this.procs.values()].filter((p) => p.running).length;
  }

  async spawn(_host: string, params: ProcStartParams, window: number): Promise<StreamProcess> {
    const known = this.procs.get(params.proc_id);
    if (known) return known; // the same request again after a lost answer
    const cwd = this.cwdOf(params.cwd);
    const env = { ...this.baseEnv, HOME: this.opts.home, ...this.opts.secrets(), ...params.env };
    const common = { cwd, stdin: params.stdin, timeout_s: params.timeout_s, window, onForget: () => this.procs.delete(params.proc_id) };
    let proc: LocalProcess;
    if (params.tty) {
      if (!this.opts.script || !params.argv) throw new DriverError('BAD_REQUEST', 'this host cannot make terminals: no `script` command was found');
      const plan = ptyPlan(this.opts.script, params.argv, params.tty, env);
      proc = await LocalProcess.start({ ...common, argv: plan.argv, env: plan.env, pty: true, resize: plan.resize, cleanup: plan.cleanup });
    } else {
      proc = await LocalProcess.start({ ...common, ...(params.argv ? { argv: params.argv } : { command: params.command }), env, pty: false });
    }
    this.procs.set(params.proc_id, proc);
    return proc;
  }

  async attach(_host: string, procId: string, offsets: StreamOffsets): Promise<StreamProcess | null> {
    const proc = this.procs.get(procId);
    if (!proc) return null;
    proc.removeAllListeners();
    proc.replayFrom(offsets);
    return proc;
  }

  /** Ends every process (the agent is stopping, or its host was revoked). */
  endAll(): void {
    for (const proc of [...this.procs.values()]) void proc.forget();
  }

  private cwdOf(cwd: string | undefined): string {
    const dir = cwd === undefined ? this.opts.home : path.resolve(this.opts.home, cwd);
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
    } catch {
      /* missing or unreadable */
    }
    if (!isDir) throw new DriverError('BAD_REQUEST', `cwd ${dir} is not a directory the agent's user can use`);
    return dir;
  }

  private prune(): void {
    const now = Date.now();
    for (const [id, p] of this.procs) if (p.endedAt !== null && now - p.endedAt > ENDED_KEPT_MS) this.procs.delete(id);
  }
}
