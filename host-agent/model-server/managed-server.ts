/**
 * A model server the agent starts and owns: the managed server
 * (./main.ts) as a child process on a loopback port it picks itself. Start
 * waits for its "listening" line (bounded; the error says what the server
 * printed); stop sends TERM and, after a grace period, KILL. The agent stops
 * only servers it started this way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const MAIN = fileURLToPath(new URL('./main.ts', import.meta.url));
const STOP_GRACE_MS = 5_000;

export interface ManagedOptions {
  model: string;
  modelsDir: string;
  /** Requests generated at once. */
  slots?: number;
  /** CPU threads for evaluation (0: llama.cpp decides). */
  threads?: number;
  /** Tokens of context per slot. */
  contextSize?: number;
  /** Requests that may wait for a slot before new ones get 503. */
  maxQueue?: number;
  /** How long loading may take before start fails. */
  startTimeoutMs?: number;
}

export class ManagedModelServer {
  private child: ChildProcess | null = null;
  private stderrTail = '';
  private exitListeners: Array<(code: number | null, signal: NodeJS.Signals | null) => void> = [];
  private readonly opts: ManagedOptions;
  port = 0;

  constructor(opts: ManagedOptions) {
    this.opts = opts;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What the server last wrote to stderr (for error messages). */
  get lastError(): string {
    return this.stderrTail.trim();
  }

  /** Called once when the server process ends (crash or stop). */
  onExit(fn: (code: number | null, signal: NodeJS.Signals | null) => void): void {
    this.exitListeners.push(fn);
  }

  /** Starts the server and resolves with its base URL once it listens. */
  async start(): Promise<string> {
    const o = this.opts;
    const args = [MAIN, '--model', o.model, '--models-dir', o.modelsDir, '--port', '0'];
    if (o.slots) args.push('--slots', String(o.slots));
    if (o.threads !== undefined) args.push('--threads', String(o.threads));
    if (o.contextSize) args.push('--ctx', String(o.contextSize));
    if (o.maxQueue !== undefined) args.push('--queue', String(o.maxQueue));
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.stderrTail = (this.stderrTail + d).slice(-4096)));
    child.once('exit', (code, signal) => {
      for (const fn of this.exitListeners.splice(0)) fn(code, signal);
    });
    const lines = createInterface({ input: child.stdout! });
    const timeoutMs = o.startTimeoutMs ?? 120_000;
    try {
      this.port = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`the model server did not start within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
        child.once('exit', (code, signal) => {
          clearTimeout(timer);
          reject(new Error(`the model server exited (${signal ?? `code ${code}`}) before it listened: ${this.lastError || 'no message'}`));
        });
        child.once('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
        lines.on('line', (line) => {
          try {
            const msg = JSON.parse(line) as { event?: string; port?: number };
            if (msg.event === 'listening' && typeof msg.port === 'number') {
              clearTimeout(timer);
              resolve(msg.port);
            }
          } catch {
            /* not a status line */
          }
        });
      });
    } catch (e) {
      await this.stop();
      throw e;
    }
    return this.baseUrl();
  }

  baseUrl(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** TERM, then KILL after a grace period; resolves when the process is gone. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    await gone;
    clearTimeout(timer);
  }

  /** Kills the server at once (a crash, for tests of what happens then). */
  kill(): void {
    this.child?.kill('SIGKILL');
  }
}
