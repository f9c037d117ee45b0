/**
 * Keeps a process running. `npm start` runs the host agent under it: an
 * agent that dies is started again after a pause that doubles from a second
 * up to half a minute (and starts over once a run has lasted a minute), while
 * the API it serves stays up. Computers outlive their agent, so a restarted
 * agent finds them again.
 */
import type { ChildProcess } from 'node:child_process';

export interface SupervisorOptions {
  /** What is supervised, for the log lines. */
  name: string;
  /** Starts the process; resolves once it is ready, rejects if it dies first. */
  start: () => Promise<{ process: ChildProcess }>;
  log: (line: string) => void;
  minDelayMs?: number;
  maxDelayMs?: number;
  /** A run this long resets the pause to its minimum. */
  stableMs?: number;
  /** Called with each new process once it is ready. */
  onStarted?: (child: ChildProcess) => void;
}

export class Supervisor {
  private readonly opts: Required<Omit<SupervisorOptions, 'onStarted'>> & Pick<SupervisorOptions, 'onStarted'>;
  private child: ChildProcess | null = null;
  private stopped = false;
  private delay: number;
  private timer: NodeJS.Timeout | null = null;
  /** How many times the process was started again after dying. */
  restarts = 0;

  constructor(opts: SupervisorOptions) {
    this.opts = { minDelayMs: 1_000, maxDelayMs: 30_000, stableMs: 60_000, ...opts };
    this.delay = this.opts.minDelayMs;
  }

  /** The first start. Its failure is the caller's (a process that cannot start at all is not retried for ever). */
  async start(): Promise<ChildProcess> {
    const { process: child } = await this.opts.start();
    this.watch(child);
    return child;
  }

  /** The current process, if one runs. */
  get current(): ChildProcess | null {
    return this.child;
  }

  /** Stops supervising and ends the process with `signal`, waiting up to 10 s (then SIGKILL). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill(signal);
    });
  }

  private watch(child: ChildProcess): void {
    this.child = child;
    const startedAt = Date.now();
    this.opts.onStarted?.(child);
    child.once('exit', (code, signal) => {
      if (this.child === child) this.child = null;
      if (this.stopped) return;
      if (Date.now() - startedAt >= this.opts.stableMs) this.delay = this.opts.minDelayMs;
      this.opts.log(`${this.opts.name} exited (${signal ?? `code ${code}`}); starting it again in ${Math.round(this.delay / 100) / 10} s`);
      this.later();
    });
  }

  private later(): void {
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, this.opts.maxDelayMs);
    this.timer = setTimeout(() => void this.again(), wait);
  }

  private async again(): Promise<void> {
    if (this.stopped) return;
    try {
      const { process: child } = await this.opts.start();
      if (this.stopped) {
        child.kill('SIGTERM');
        return;
      }
      this.restarts++;
      this.opts.log(`${this.opts.name} is running again (pid ${child.pid})`);
      this.watch(child);
    } catch (err) {
      this.opts.log(`${this.opts.name} did not start: ${(err as Error).message.split('\n')[0]}; trying again in ${Math.round(this.delay / 100) / 10} s`);
      this.later();
    }
  }
}
