/**
 * Terminal sessions (spec/03-exec.txt, Terminal): a login shell on a real PTY
 * in the computer, relayed to any number of WebSockets. Bytes flow raw in
 * binary frames both ways (text frames from a client are UTF-8 keystrokes, or
 * a JSON resize). A session outlives its sockets: one that re-attaches gets
 * the recent output (OutputRing, in storage) and then the live stream. A
 * session nobody watches ends TERMINAL_IDLE_MS after its last socket left;
 * the shell exiting ends it and closes its sockets with CLOSE.SHELL_EXITED.
 */
import { z } from 'zod';
import { ApiError, fail, ok, type Result } from '../../schema/errors.ts';
import type { OutputStream, ProcExit } from '../../schema/protocol.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { AgentLink } from '../agent-link.ts';
import { CLOSE, acceptClient, closeClients, closeSocket, openClients, sendBytes } from './client-sockets.ts';
import { hangUp } from './hang-up.ts';
import { newProcId } from './proc-id.ts';
import type { ProcManager, ProcOutcome, ProcSink } from './proc-manager.ts';
import type { ProcRow } from './proc-table.ts';
import { STDIN_QUEUE_BYTES, type StdinPumps } from './stdin-pump.ts';
import { OutputRing } from './terminal-ring.ts';

/** A session with no socket ends this long after its last socket left (or after its creation, if none came). */
export const TERMINAL_IDLE_MS = 10 * 60_000;
/** When ending an idle session could not be done (agent away) or is under way, it is looked at again this much later. */
const EXPIRE_RETRY_MS = 60_000;

export interface TerminalOptions {
  cols: number;
  rows: number;
  shell: string;
}

interface TerminalState extends TerminalOptions {
  /** Since when no socket has been attached; null while one is. */
  idle_since: number | null;
  /** The session `default` names (GET …/urls gives its URL): made on first attach, one per organization. */
  default?: boolean;
}

/** The session id that stands for a computer's default terminal. */
export const DEFAULT_SESSION = 'default';
const DEFAULT_OPTIONS: TerminalOptions = { cols: 80, rows: 24, shell: '/bin/bash' };

const ResizeMessage = z.object({
  type: z.literal('resize'),
  cols: z.number().int().min(1).max(1000),
  rows: z.number().int().min(1).max(1000),
});

/** How a session's sockets are closed when it has ended. */
function closing(exit: ProcExit | null, message?: string): { code: number; reason: string } {
  if (exit) return { code: CLOSE.SHELL_EXITED, reason: `shell exited with code ${exit.exit_code}` };
  return { code: CLOSE.SESSION_LOST, reason: message ?? 'the terminal session ended with its computer' };
}

export class TerminalSink implements ProcSink {
  readonly ring: OutputRing;
  readonly state: TerminalState;

  constructor(
    private readonly ctx: DurableObjectState,
    sql: SqlStorage,
    row: ProcRow,
    private readonly onEnd: (procId: string) => void,
  ) {
    this.state = { ...(row.sink_state as unknown as TerminalState) };
    this.ring = new OutputRing(sql, row.proc_id);
  }

  private get procId(): string {
    return this.ring.procId;
  }

  output(_stream: OutputStream, bytes: Uint8Array): void {
    this.ring.append(bytes);
    sendBytes(openClients(this.ctx, this.procId), bytes);
  }

  end(outcome: ProcOutcome): void {
    this.onEnd(this.procId);
    const c = outcome.kind === 'exit' ? closing(outcome.exit) : closing(null, outcome.message);
    closeClients(this.ctx, this.procId, c.code, c.reason);
  }

  commit(row: ProcRow): void {
    this.ring.flush();
    row.sink_state = { ...this.state };
  }

  dispose(): void {
    this.ring.drop();
  }
}

export class Terminals {
  constructor(
    private readonly ctx: DurableObjectState,
    private readonly link: AgentLink,
    private readonly procs: ProcManager,
    private readonly stdin: StdinPumps,
    /** Re-arms the object's alarm after an idle deadline moved. */
    private readonly rescheduled: () => Promise<void>,
  ) {
    OutputRing.init(ctx.storage.sql);
  }

  sink(row: ProcRow): ProcSink {
    return new TerminalSink(this.ctx, this.ctx.storage.sql, row, (procId) => this.stdin.drop(procId));
  }

  /** Starts a login shell on a PTY; the session id is its process id. */
  async create(orgId: string, opts: TerminalOptions, isDefault = false): Promise<Result<{ session_id: string }>> {
    const procId = newProcId();
    const state: TerminalState = { ...opts, idle_since: Date.now(), ...(isDefault ? { default: true } : {}) };
    const started = await this.procs.start(
      'terminal',
      orgId,
      { proc_id: procId, argv: [opts.shell, '-l'], shell: opts.shell, tty: { rows: opts.rows, cols: opts.cols }, env: { TERM: 'xterm-256color' }, stdin: true },
      { ...state },
    );
    if (!started.ok) return started;
    await this.rescheduled();
    return ok({ session_id: procId });
  }

  /** Attaches a socket: the recent output first, then live output; an ended session replays and closes. */
  async attach(orgId: string, sessionId: string, requestId: string, tags: string[] = []): Promise<Response> {
    if (sessionId === DEFAULT_SESSION) {
      const made = await this.defaultSession(orgId);
      if (!made.ok) return errorResponse(new ApiError(made.code, made.message), requestId);
      sessionId = made.value;
    }
    const row = this.session(orgId, sessionId);
    if (!row) return errorResponse(new ApiError('NOT_FOUND', 'terminal session not found'), requestId);
    const sink = this.sinkOf(row);
    const pair = new WebSocketPair();
    const server = pair[1];
    // No await between reading the ring and joining the viewers: no output can fall in between.
    acceptClient(this.ctx, server, 'terminal', sessionId, tags);
    sendBytes([server], sink.ring.read());
    if (row.status === 'ended') {
      const c = closing(row.exit);
      closeSocket(server, c.code, c.reason);
    } else if (sink.state.idle_since !== null) {
      sink.state.idle_since = null;
      this.persist(row, sink);
      await this.rescheduled();
    }
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async resize(orgId: string, sessionId: string, size: { cols: number; rows: number }): Promise<Result<true>> {
    const row = this.session(orgId, sessionId);
    if (!row) return fail('NOT_FOUND', 'terminal session not found');
    if (row.status !== 'running') return fail('CONFLICT', 'the terminal session has ended');
    const r = await this.link.request('proc.resize', { proc_id: sessionId, rows: size.rows, cols: size.cols }, 10_000);
    if (!r.ok) return r;
    const sink = this.sinkOf(row);
    sink.state.cols = size.cols;
    sink.state.rows = size.rows;
    this.persist(row, sink);
    return ok(true);
  }

  /** Keystrokes (binary, or text as UTF-8), or a JSON resize in a text frame. */
  onMessage(ws: WebSocket, procId: string, data: string | ArrayBuffer): void {
    let bytes: Uint8Array;
    if (typeof data === 'string') {
      const resize = parseResize(data);
      if (resize) {
        const row = this.procs.row(procId);
        if (row) void this.resize(row.org_id, procId, resize);
        return;
      }
      bytes = new TextEncoder().encode(data);
    } else {
      bytes = new Uint8Array(data);
    }
    if (!this.stdin.write(procId, bytes)) {
      closeSocket(ws, CLOSE.TOO_BIG, `more than ${STDIN_QUEUE_BYTES} bytes of input are waiting for the terminal to read them`);
    }
  }

  /** A socket left; with none left the idle clock starts. */
  async onClose(ws: WebSocket, procId: string): Promise<void> {
    closeSocket(ws, 1000, 'closed');
    const row = this.procs.row(procId);
    if (!row || row.status !== 'running' || openClients(this.ctx, procId, ws).length > 0) return;
    const sink = this.sinkOf(row);
    sink.state.idle_since = Date.now();
    this.persist(row, sink);
    await this.rescheduled();
  }

  /** When the next unwatched session is due to end; null for none. */
  nextExpiry(): number | null {
    let at: number | null = null;
    for (const { idle_since } of this.running()) {
      if (idle_since !== null) at = Math.min(at ?? Infinity, idle_since + TERMINAL_IDLE_MS);
    }
    return at;
  }

  /** Hangs up sessions nobody has watched for TERMINAL_IDLE_MS (from the object's alarm). */
  async expireIdle(now = Date.now()): Promise<void> {
    const due = this.running().filter((s) => s.idle_since !== null && s.idle_since + TERMINAL_IDLE_MS <= now);
    await Promise.all(
      due.map(async ({ row, sink }) => {
        // Looked at again later in case the hang-up does not end it (or the agent is away), never in a tight loop.
        sink.state.idle_since = now - TERMINAL_IDLE_MS + EXPIRE_RETRY_MS;
        this.persist(row, sink);
        if (openClients(this.ctx, row.proc_id).length === 0) await hangUp(this.link, this.procs, row.proc_id);
      }),
    );
  }

  private running(): { row: ProcRow; sink: TerminalSink; idle_since: number | null }[] {
    return this.procs.table
      .running()
      .filter((r) => r.kind === 'terminal')
      .map((stored) => {
        const row = this.procs.row(stored.proc_id)!;
        const sink = this.sinkOf(row);
        return { row, sink, idle_since: sink.state.idle_since };
      });
  }

  /** The organization's running default session, started (80x24, bash) when there is none. */
  private async defaultSession(orgId: string): Promise<Result<string>> {
    const live = this.procs.table
      .running()
      .find((r) => r.kind === 'terminal' && r.org_id === orgId && (r.sink_state as Partial<TerminalState>).default === true);
    if (live) return ok(live.proc_id);
    const made = await this.create(orgId, DEFAULT_OPTIONS, true);
    return made.ok ? ok(made.value.session_id) : made;
  }

  private session(orgId: string, sessionId: string): ProcRow | null {
    const row = this.procs.row(sessionId);
    return row && row.kind === 'terminal' && row.org_id === orgId ? row : null;
  }

  private sinkOf(row: ProcRow): TerminalSink {
    return this.procs.sink(row.proc_id) as TerminalSink;
  }

  /** Stores the session's state (and the output held so far, which the stored offsets already count). */
  private persist(row: ProcRow, sink: TerminalSink): void {
    sink.commit(row);
    this.procs.table.save(row);
  }
}

function parseResize(text: string): { cols: number; rows: number } | null {
  if (!text.startsWith('{')) return null;
  try {
    const r = ResizeMessage.safeParse(JSON.parse(text));
    return r.success ? { cols: r.data.cols, rows: r.data.rows } : null;
  } catch {
    return null;
  }
}
