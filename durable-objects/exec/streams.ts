/**
 * Everything that streams in and out of one computer: streamed commands with
 * their SSE viewers and tickets, exec sockets, terminals, and the agent's side
 * of them (output frames, exits, stdin acknowledgements). The ComputerObject
 * checks who may do what; this module does it. A tenant host's HostObject
 * composes it too (its sandbox is the machine itself), adding its jobs as one
 * more kind of process.
 */
import { fail, ok, ApiError, type Result } from '../../schema/errors.ts';
import type { BinaryFrame, ProcStartParams } from '../../schema/protocol.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import { lastEventId } from '../sse-hub.ts';
import type { AgentLink } from '../agent-link.ts';
import type { Caller } from '../computer/record.ts';
import { CLIENT_OPEN_HEADER, clientOf, parseClientOpen } from './client-sockets.ts';
import { EventLog } from './event-log.ts';
import { hangUp } from './hang-up.ts';
import { ProcManager, type SinkFactory } from './proc-manager.ts';
import type { ProcKind } from './proc-table.ts';
import type { ProcObserver } from './proc-manager.ts';
import { newProcId } from './proc-id.ts';
import { StdinPumps } from './stdin-pump.ts';
import { StreamExecSink } from './stream-exec.ts';
import { Terminals, type TerminalOptions } from './terminal.ts';
import { Tickets } from './tickets.ts';
import { ExecSockets } from './ws-exec.ts';
import { SyncExecs } from './sync-exec.ts';
import type { HeldCredentials } from '../credentials/held-credentials.ts';

const AGENT_AWAY = "the computer's host agent is not connected; try again shortly";

/** How the object lets a socket in: the caller's access to the computer, for exec (running) or a terminal. */
export type AccessCheck = (caller: Caller, op: 'exec' | 'view') => Promise<Result<unknown>>;

export class Streams {
  readonly procs: ProcManager;
  readonly terminals: Terminals;
  readonly syncExecs: SyncExecs;
  private readonly tickets: Tickets;
  private readonly stdin: StdinPumps;
  private readonly execSockets: ExecSockets;

  constructor(
    ctx: DurableObjectState,
    private readonly link: AgentLink,
    private readonly held: HeldCredentials,
    rescheduled: () => Promise<void>,
    /** Kinds of process the owner adds (a tenant host's jobs), each with where its output goes. */
    moreSinks: Partial<Record<ProcKind, SinkFactory>> = {},
    observer?: ProcObserver,
  ) {
    const sql = ctx.storage.sql;
    EventLog.init(sql);
    this.tickets = new Tickets(sql);
    this.procs = new ProcManager(sql, link, {
      stream: (row) =>
        new StreamExecSink(
          sql,
          row,
          (procId) => this.tickets.dropFor(procId),
          (procId) => this.procs.release(procId),
        ),
      ws: (row) => this.execSockets.sink(row),
      terminal: (row) => this.terminals.sink(row),
      sync: (row) => this.syncExecs.sink(row),
      ...moreSinks,
    }, observer);
    this.stdin = new StdinPumps(this.procs, link);
    this.syncExecs = new SyncExecs(sql, this.procs, this.stdin);
    this.execSockets = new ExecSockets(ctx, link, this.procs, this.stdin);
    this.terminals = new Terminals(ctx, link, this.procs, this.stdin, rescheduled);
  }

  /** Starts a streamed command (output kept from its first byte) and issues the ticket its SSE stream needs. */
  async startStream(caller: Caller, params: { command: string; timeout_s: number; shell: string }): Promise<Result<{ ticket: string; expires_at: number }>> {
    if (!this.link.socket()) return fail('AGENT_UNAVAILABLE', AGENT_AWAY);
    const proc_id = newProcId();
    const start: ProcStartParams = { proc_id, command: params.command, shell: params.shell, timeout_s: params.timeout_s, stdin: false };
    const started = await this.procs.start('stream', caller.org_id, start, { timeout_s: params.timeout_s, started_at: Date.now() });
    if (!started.ok) return started;
    return ok(await this.tickets.issue(proc_id, caller.credential_id));
  }

  /** GET …/exec/stream/events: the ticket's command as Server-Sent Events, from after Last-Event-ID; DELETE cancels it. */
  async streamEvents(request: Request, url: URL): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const ticket = url.searchParams.get('ticket');
    const redeemed = ticket ? await this.tickets.redeem(ticket) : null;
    const row = redeemed ? this.procs.row(redeemed.proc_id) : null;
    const sink = row?.kind === 'stream' ? (this.procs.sink(row.proc_id) as StreamExecSink) : null;
    if (!redeemed || !row || !sink) return errorResponse(new ApiError('UNAUTHORIZED', 'unknown or expired ticket; start the command again with POST …/exec/stream'), requestId);
    if (!(await this.held.admits(redeemed.credential_id))) {
      this.tickets.dropForCredential(redeemed.credential_id!);
      return errorResponse(new ApiError('UNAUTHORIZED', 'the API key this ticket was issued with is revoked'), requestId);
    }
    if (request.method === 'DELETE') return this.cancelStream(row.proc_id, requestId);
    const after = lastEventId(request);
    // A viewer that already has the terminal event is told not to reconnect.
    if (sink.log.done() && after >= sink.log.lastSeq()) return new Response(null, { status: 204 });
    // The viewer ends when it goes away, or when the key its ticket came from is revoked.
    const viewer = this.held.viewer(request.signal, redeemed.credential_id);
    return sink.hub.subscribe(after, viewer.signal, viewer.untrack);
  }

  /** A revoked key: its tickets stop working and its viewers and sockets are closed. */
  endCredential(credentialId: string): number {
    this.tickets.dropForCredential(credentialId);
    return this.held.revoke(credentialId);
  }

  /** The computer is being deleted: every viewer's stream ends (sockets are closed by the object). */
  closeViewers(): void {
    this.procs.closeSinks();
  }

  /**
   * Cancels a streamed command: TERM to its process group, KILL 2 s later if it
   * still runs. Its viewers then get the exit event as for any exit. 204 also
   * when it had already ended, so a cancel can be repeated.
   */
  private async cancelStream(procId: string, requestId: string): Promise<Response> {
    if (!(await hangUp(this.link, this.procs, procId, 'TERM'))) return errorResponse(new ApiError('AGENT_UNAVAILABLE', AGENT_AWAY), requestId);
    return new Response(null, { status: 204 });
  }

  /** POST …/terminal: a login shell on a PTY, for sockets to attach to. */
  async createTerminal(orgId: string, opts: TerminalOptions): Promise<Result<{ session_id: string }>> {
    if (!this.link.socket()) return fail('AGENT_UNAVAILABLE', AGENT_AWAY);
    return this.terminals.create(orgId, opts);
  }

  /** A client socket a route authenticated: exec over WebSocket (starts its process) or a terminal viewer. */
  async openClient(request: Request, access: AccessCheck): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const open = parseClientOpen(request.headers.get(CLIENT_OPEN_HEADER));
    if (!open) return errorResponse(new ApiError('BAD_REQUEST', 'malformed socket request'), requestId);
    const allowed = await access(open.caller, open.kind === 'terminal' ? 'view' : 'exec');
    if (!allowed.ok) return errorResponse(new ApiError(allowed.code, allowed.message), requestId);
    if (open.kind === 'events') return errorResponse(new ApiError('BAD_REQUEST', 'events sockets are opened by the computer object itself'), requestId);
    if (!(await this.held.admits(open.caller.credential_id))) return errorResponse(new ApiError('UNAUTHORIZED', 'credential revoked'), requestId);
    const tags = this.held.tags(open.caller.credential_id);
    if (open.kind === 'terminal') return this.terminals.attach(open.caller.org_id, open.session_id, requestId, tags);
    if (!this.link.socket()) return errorResponse(new ApiError('AGENT_UNAVAILABLE', AGENT_AWAY), requestId);
    return this.execSockets.open(open.caller.org_id, open.start, open.subprotocol, requestId, tags);
  }

  /** A message from an exec or terminal client socket. */
  onClientMessage(ws: WebSocket, data: string | ArrayBuffer): void {
    const client = clientOf(ws);
    if (client?.kind === 'exec') this.execSockets.onMessage(ws, client.proc_id, data);
    if (client?.kind === 'terminal') this.terminals.onMessage(ws, client.proc_id, data);
  }

  async onClientGone(ws: WebSocket): Promise<void> {
    const client = clientOf(ws);
    if (client?.kind === 'exec') await this.execSockets.onClose(ws, client.proc_id);
    if (client?.kind === 'terminal') await this.terminals.onClose(ws, client.proc_id);
  }

  onOutput(frame: BinaryFrame): void {
    this.procs.onOutput(frame);
  }

  onStdinAck(procId: string, offset: number): void {
    this.stdin.onAck(procId, offset);
  }

  /** A reconnected agent: every live process resumes where it was, stdin too. */
  async agentResumed(): Promise<void> {
    await this.procs.resumeAll();
    this.stdin.resumeAll();
    await this.execSockets.agentResumed();
  }

  /** A command or terminal is running. */
  busy(): boolean {
    return this.procs.hasRunning();
  }

  expiries(): (number | null)[] {
    return [this.procs.nextExpiry(), this.terminals.nextExpiry()];
  }

  async sweep(): Promise<void> {
    this.procs.sweep();
    await this.terminals.expireIdle();
  }
}
