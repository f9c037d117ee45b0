/**
 * The computer's desktop daemon as its ComputerObject sees it: started with an
 * exec of the guest mount's desktop.py (as `user`, idempotent), reached over
 * relayed TCP streams to 127.0.0.1:5990 inside the computer, a few connections
 * ("lanes") kept open so one slow call (a launch waiting for its window) does
 * not hold up a screenshot, idle ones closed after a while.
 *
 * Waiting: a call made while the desktop starts (the computer just booted, or
 * the daemon was not running) waits up to START_WAIT_MS for it, so clients
 * that do not retry still work; after that it is a 503 with Retry-After.
 */
import type { ExecRunParams, ExecRunResult } from '../../schema/protocol.ts';
import type { ErrorCode, Result } from '../../schema/errors.ts';
import { DESKTOP_CONTROL_PORT, DESKTOP_START_COMMAND, type DaemonOp } from '../../schema/desktop.ts';
import { DaemonConnection, type DaemonAnswer, type DaemonStream } from './daemon-connection.ts';

/** How long a call waits for a desktop that is starting before it answers 503. */
export const START_WAIT_MS = 15_000;
const LANES = 4;
const IDLE_CLOSE_MS = 60_000;
const START_TIMEOUT_S = 30;
/** After a start attempt, connection refusals within this long are the daemon still binding its port, not a reason to start it again. */
const RESTART_AFTER_MS = 5_000;

/** A relayed stream's outcome at open: null when connected. */
export type OpenOutcome = { code: string; message: string } | null;

export interface DesktopDaemonHost {
  /** Opens a relayed TCP stream to a port inside the computer. */
  openStream(port: number): Result<DaemonStream & { readonly accepted: Promise<OpenOutcome> }>;
  /** Runs a command in the computer as `user` (the agent's exec.run). */
  exec(params: ExecRunParams, timeoutMs: number): Promise<Result<ExecRunResult>>;
  /** The computer's screen size as its record says, WIDTHxHEIGHT. */
  resolution(): string;
}

/** A failed call: the Result's failure, with the seconds to wait when the desktop is starting. */
export type DesktopFailure = { ok: false; code: ErrorCode; message: string; retry_after?: number };
export type DesktopResult<T> = { ok: true; value: T } | DesktopFailure;

/** Operations that change nothing, safe to send again. */
const READS = new Set<DaemonOp>(['status', 'screenshot', 'cursor', 'windows', 'state']);

const failure = (code: ErrorCode, message: string, retry_after?: number): DesktopFailure => ({ ok: false, code, message, ...(retry_after ? { retry_after } : {}) });

export class DesktopDaemon {
  private lanes: DaemonConnection[] = [];
  private starting: Promise<DesktopResult<true>> | null = null;
  private startedAt = 0;
  private sweeper: ReturnType<typeof setInterval> | null = null;

  private readonly host: DesktopDaemonHost;

  constructor(host: DesktopDaemonHost) {
    this.host = host;
  }

  /** Starts the daemon if it is not running (it then brings the desktop up by itself). */
  start(): Promise<DesktopResult<true>> {
    this.starting ??= this.runStart().finally(() => (this.starting = null));
    return this.starting;
  }

  /** One operation of the daemon, waiting a bounded time (START_WAIT_MS unless `waitMs` says) for a desktop that is still starting. */
  async call(op: DaemonOp, args: Record<string, unknown>, timeoutMs: number, waitMs = START_WAIT_MS): Promise<DesktopResult<DaemonAnswer>> {
    const deadline = Date.now() + waitMs;
    let retryAfter = 2;
    for (;;) {
      const lane = await this.lane(deadline);
      if (!lane.ok) return lane;
      const reply = await lane.value.request(op, args, timeoutMs);
      if (reply.ok) return { ok: true, value: reply.answer };
      const r = reply.refusal;
      switch (r.code) {
        case 'BAD_REQUEST':
          return failure('VALIDATION_FAILED', r.message);
        case 'NOT_FOUND':
          return failure('WINDOW_NOT_FOUND', r.message);
        case 'FAILED':
          return failure('DESKTOP_UNAVAILABLE', `the desktop could not do it: ${r.message}`);
        case 'GONE':
          // A lost connection may or may not have delivered the input: only reads are asked again.
          if (!READS.has(op)) return failure('DESKTOP_UNAVAILABLE', `the connection to the desktop was lost during ${op}; it may or may not have happened (${r.message})`);
        // falls through
        case 'NOT_READY':
          retryAfter = r.retry_after ?? retryAfter;
          if (Date.now() + 250 > deadline) return failure('DESKTOP_STARTING', `the desktop is starting (${r.message}); try again in ${retryAfter} s`, retryAfter);
          await sleep(250);
      }
    }
  }

  /** Ends every connection (the computer stopped, the object forgets it). */
  closeAll(): void {
    for (const lane of this.lanes) lane.close();
    this.lanes = [];
  }

  // ------------------------------------------------------------ internals

  private async runStart(): Promise<DesktopResult<true>> {
    this.startedAt = Date.now();
    const r = await this.host.exec(
      { command: DESKTOP_START_COMMAND(this.host.resolution()), timeout_s: START_TIMEOUT_S, max_output_bytes: 64 * 1024 },
      (START_TIMEOUT_S + 15) * 1000,
    );
    if (!r.ok) return r.code === 'COMPUTER_NOT_RUNNING' ? failure('COMPUTER_NOT_RUNNING', 'computer is not running') : failure('AGENT_UNAVAILABLE', r.message);
    if (r.value.exit_code !== 0) {
      const tail = r.value.output.trim().split('\n').slice(-3).join(' | ');
      return failure('DESKTOP_UNAVAILABLE', `the desktop daemon could not start (exit ${r.value.exit_code}): ${tail}`);
    }
    return { ok: true, value: true };
  }

  /** An idle lane, a new one, or the least busy one; starts the daemon when nothing listens. */
  private async lane(deadline: number): Promise<DesktopResult<DaemonConnection>> {
    this.lanes = this.lanes.filter((l) => l.usable);
    const idle = this.lanes.find((l) => l.inFlight === 0);
    if (idle) return { ok: true, value: idle };
    if (this.lanes.length >= LANES) return { ok: true, value: this.lanes.reduce((a, b) => (b.inFlight < a.inFlight ? b : a)) };
    for (;;) {
      const opened = await this.connect();
      if (opened.ok) {
        this.lanes.push(opened.value);
        this.sweepLater();
        return opened;
      }
      if (opened.code !== 'DESKTOP_STARTING') return opened;
      // Nothing listens: start the daemon (once; its port appears a moment later), then try again.
      if (Date.now() - this.startedAt > RESTART_AFTER_MS) {
        const started = await this.start();
        if (!started.ok) return started;
      }
      if (Date.now() + 200 > deadline) return failure('DESKTOP_STARTING', 'the desktop is starting; try again in 2 s', 2);
      await sleep(200);
    }
  }

  private async connect(): Promise<DesktopResult<DaemonConnection>> {
    const opened = this.host.openStream(DESKTOP_CONTROL_PORT);
    if (!opened.ok) return failure('AGENT_UNAVAILABLE', opened.message);
    const outcome = await opened.value.accepted;
    if (outcome) {
      if (outcome.code === 'refused') return failure('DESKTOP_STARTING', 'the desktop daemon is not listening yet');
      return failure('AGENT_UNAVAILABLE', `the desktop cannot be reached: ${outcome.message}`);
    }
    const conn = new DaemonConnection(opened.value);
    const hello = await conn.ready();
    if (!hello.ok) return failure('DESKTOP_STARTING', hello.message);
    return { ok: true, value: conn };
  }

  private sweepLater(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const lane of this.lanes) if (lane.inFlight === 0 && now - lane.lastUsed > IDLE_CLOSE_MS) lane.close();
      this.lanes = this.lanes.filter((l) => l.usable);
      if (this.lanes.length === 0 && this.sweeper) {
        clearInterval(this.sweeper);
        this.sweeper = null;
      }
    }, IDLE_CLOSE_MS / 2);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
