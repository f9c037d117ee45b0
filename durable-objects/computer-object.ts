/**
 * One ComputerObject per computer. It owns the computer's status (persisted
 * before every side effect, mirrored to D1 for lists), the socket of the host
 * agent that serves it, its metrics, its credit burn and its auto-stop alarm.
 * Route handlers call its RPC methods, which answer Result values.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import { ComputerAgentMessage, FRAME_OUTPUT, decodeFrame, type ComputerSpec, type ExecRunParams, type ExecRunResult, type ProcStartParams } from '../schema/protocol.ts';
import { fail, ok, type Result } from '../schema/errors.ts';
import { SIZES, type Size } from '../schema/sizes.ts';
import { AgentLink } from './agent-link.ts';
import { REFUSAL, REQUIRES, transition, type LifecycleEvent, type Status } from './computer/state-table.ts';
import { callerAccess, mirrorStatus, type Caller, type ComputerRecord } from './computer/record.ts';
import { MetricsStore, type MetricsWindow, type Point } from './computer/metrics-store.ts';
import { BILLING_INTERVAL_MS, balanceOf, charge, nextAlarm } from './computer/usage.ts';
import { Lifecycle } from './computer/lifecycle.ts';
import { loadComputerEnv } from '../worker/crypto/env-cipher.ts';
import { ProcManager } from './exec/proc-manager.ts';
import { EventLog } from './exec/event-log.ts';
import { StreamExecSink } from './exec/stream-exec.ts';
import { Tickets } from './exec/tickets.ts';
import { CLIENT_OPEN_HEADER, clientOf, parseClientOpen } from './exec/client-sockets.ts';
import { StdinPumps } from './exec/stdin-pump.ts';
import { ExecSockets } from './exec/ws-exec.ts';
import { Terminals, type TerminalOptions } from './exec/terminal.ts';
import { newProcId } from './exec/proc-id.ts';
import { errorResponse } from '../worker/http/responses.ts';
import { ApiError } from '../schema/errors.ts';

const NOT_FOUND = 'computer not found';
/** How soon a due stop (idle, or out of credits) is tried again when the agent could not do it. */
const STOP_RETRY_MS = 15_000;

export interface MetricsView {
  cpu_percent: Point[];
  memory_percent: Point[];
  credits_per_hour: number;
}

export class ComputerObject extends DurableObject<Env> {
  private rec: ComputerRecord | null = null;
  private loaded: Promise<void>;
  readonly link: AgentLink;
  private readonly metrics: MetricsStore;
  private readonly lifecycle: Lifecycle;
  readonly procs: ProcManager;
  private readonly tickets: Tickets;
  private readonly stdin: StdinPumps;
  private readonly execSockets: ExecSockets;
  readonly terminals: Terminals;
  private lastActivity = Date.now();
  private lastActivityStored = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.link = new AgentLink(ctx);
    this.metrics = new MetricsStore(ctx.storage.sql);
    this.lifecycle = new Lifecycle(this);
    const sql = ctx.storage.sql;
    EventLog.init(sql);
    this.tickets = new Tickets(sql);
    this.procs = new ProcManager(sql, this.link, {
      stream: (row) => new StreamExecSink(sql, row, (procId) => this.tickets.dropFor(procId)),
      ws: (row) => this.execSockets.sink(row),
      terminal: (row) => this.terminals.sink(row),
    });
    this.stdin = new StdinPumps(this.procs, this.link);
    this.execSockets = new ExecSockets(ctx, this.link, this.procs, this.stdin);
    this.terminals = new Terminals(ctx, this.link, this.procs, this.stdin, () => this.scheduleAlarm());
    this.loaded = ctx.blockConcurrencyWhile(async () => {
      this.rec = (await ctx.storage.get<ComputerRecord>('record')) ?? null;
      this.lastActivity = (await ctx.storage.get<number>('last_activity')) ?? Date.now();
    });
  }

  // ------------------------------------------------------------ state

  get record(): ComputerRecord | null {
    return this.rec;
  }

  /** Applies a lifecycle event: the new status is in memory at once (so racing calls see it), then stored, then in D1. */
  async apply(event: LifecycleEvent): Promise<Status | null> {
    const rec = this.rec;
    if (!rec) return null;
    const next = transition(rec.status, event);
    if (!next) return null;
    if (next !== rec.status) {
      const wasRunning = rec.status === 'running';
      rec.status = next;
      await this.ctx.storage.put('record', rec);
      await mirrorStatus(this.env.DB, rec.id, next);
      if (next === 'running' && !wasRunning) await this.startMeter();
      if (wasRunning && next !== 'running') {
        // Whatever ran in the computer is gone with it; its viewers get an honest error event.
        this.procs.loseAll(`the computer is ${next === 'restarting' ? 'restarting' : 'stopped'}; the command ended with it`);
        await this.stopMeter();
      }
    }
    return next;
  }

  async save(patch: Partial<ComputerRecord>): Promise<void> {
    if (!this.rec) return;
    Object.assign(this.rec, patch);
    await this.ctx.storage.put('record', this.rec);
  }

  /** The spec the agent boots with, env values decrypted from D1. */
  async spec(): Promise<ComputerSpec> {
    const rec = this.rec!;
    return {
      id: rec.id,
      name: rec.name,
      template: rec.template_type,
      size: rec.size,
      vcpus: rec.vcpus,
      memory_mb: rec.memory_mb,
      selected_apps: rec.selected_apps,
      env: await loadComputerEnv(this.env.DB, this.env.ENV_ENCRYPTION_KEY, rec.id),
    };
  }

  /** The record when the caller may use it; otherwise the failure to answer with. */
  private async guard(caller: Caller): Promise<Result<ComputerRecord>> {
    await this.loaded;
    const access = callerAccess(caller, this.rec);
    if (access === 'not_found') return fail('NOT_FOUND', NOT_FOUND);
    if (access === 'forbidden') return fail('FORBIDDEN', 'not a member of this computer');
    this.touch();
    return ok(this.rec!);
  }

  /** Any API, exec or terminal use counts as activity for auto-stop. */
  touch(): void {
    this.lastActivity = Date.now();
    // Stored now and then so an evicted object does not forget recent use; writes are coalesced, not awaited.
    if (this.lastActivity - this.lastActivityStored > 10_000) {
      this.lastActivityStored = this.lastActivity;
      void this.ctx.storage.put('last_activity', this.lastActivity);
    }
  }

  // ------------------------------------------------------------ RPC: lifecycle

  /** Records a new computer (provisioning) and asks its host's agent to attach. */
  async create(rec: ComputerRecord): Promise<Result<Status>> {
    await this.loaded;
    if (this.rec) return fail('CONFLICT', 'computer already exists');
    this.rec = { ...rec, status: 'provisioning' };
    await this.ctx.storage.put('record', this.rec);
    await this.ctx.storage.put('last_activity', Date.now());
    const host = this.env.HOST.get(this.env.HOST.idFromName(rec.host_id));
    await host.attach(rec.id);
    return ok('provisioning');
  }

  async start(caller: Caller): Promise<Result<Status>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    if (!transition(rec.status, 'start')) return fail('INVALID_STATE_TRANSITION', REFUSAL.start);
    if ((await balanceOf(this.env.DB, rec.org_id)) <= 0) return fail('INSUFFICIENT_CREDITS', 'not enough credits to start this computer');
    return this.lifecycle.run('start');
  }

  async stop(caller: Caller): Promise<Result<Status>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    if (!transition(rec.status, 'stop')) return fail('INVALID_STATE_TRANSITION', REFUSAL.stop);
    return this.lifecycle.run('stop');
  }

  async restart(caller: Caller): Promise<Result<Status>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    if (!transition(rec.status, 'restart')) return fail('INVALID_STATE_TRANSITION', REFUSAL.restart);
    return this.lifecycle.run('restart');
  }

  /** Destroys the computer on its host (when the agent is there; otherwise the agent removes the orphan when it reconnects) and forgets it. */
  async destroy(caller: Caller): Promise<Result<true>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    await this.apply('delete');
    if (this.link.socket()) await this.link.request('computer.destroy', {}, 120_000);
    await this.forget();
    return ok(true);
  }

  /** Erases the object's storage; later calls find no computer. */
  async forget(): Promise<void> {
    this.rec = null;
    await this.ctx.storage.deleteAlarm();
    await this.ctx.storage.deleteAll();
    for (const ws of this.ctx.getWebSockets()) {
      try {
        ws.close(4004, 'computer deleted');
      } catch {
        /* already closed */
      }
    }
  }

  /** Checks an operation that needs one exact status (clone, resize, move, exec) without changing anything. */
  async require(caller: Caller, op: keyof typeof REQUIRES): Promise<Result<ComputerRecord>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    if (rec.status !== REQUIRES[op]) {
      return op === 'exec' ? fail('COMPUTER_NOT_RUNNING', 'computer is not running') : fail('INVALID_STATE_TRANSITION', REFUSAL[op]);
    }
    return ok(rec);
  }

  async resize(caller: Caller, size: Size): Promise<Result<Status>> {
    const r = await this.require(caller, 'resize');
    if (!r.ok) return r;
    await this.save({ size, vcpus: SIZES[size].vcpus, memory_mb: SIZES[size].memory_mb });
    // The limits take effect at the next boot; an attached agent also records them now.
    if (this.link.socket()) await this.link.request('computer.resize', { spec: await this.spec() }, 30_000);
    return ok(r.value.status);
  }

  async setAutoStop(caller: Caller, seconds: number): Promise<Result<number>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    await this.save({ auto_stop: seconds });
    await this.scheduleAlarm();
    return ok(seconds);
  }

  /** Hands new env values to the running computer so new processes see them. */
  async envChanged(caller: Caller): Promise<Result<true>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    if (rec.status === 'running' && this.link.socket()) {
      const spec = await this.spec();
      const r = await this.link.request('computer.env', { env: spec.env }, 30_000);
      if (!r.ok) return r;
    }
    return ok(true);
  }

  // ------------------------------------------------------------ RPC: exec and metrics

  async exec(caller: Caller, params: ExecRunParams): Promise<Result<ExecRunResult>> {
    const r = await this.require(caller, 'exec');
    if (!r.ok) return r;
    const res = await this.link.request('exec.run', { params }, params.timeout_s * 1000 + 15_000);
    this.touch();
    return res;
  }

  /** Starts a streamed command (output kept from its first byte) and issues the ticket its SSE stream needs. */
  async startStream(caller: Caller, params: { command: string; timeout_s: number; shell: string }): Promise<Result<{ ticket: string; expires_at: number }>> {
    const r = await this.require(caller, 'exec');
    if (!r.ok) return r;
    if (!this.link.socket()) return fail('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly");
    const proc_id = newProcId();
    const start: ProcStartParams = { proc_id, command: params.command, shell: params.shell, timeout_s: params.timeout_s, stdin: false };
    const started = await this.procs.start('stream', caller.org_id, start, { timeout_s: params.timeout_s, started_at: Date.now() });
    if (!started.ok) return started;
    await this.scheduleAlarm();
    return ok(await this.tickets.issue(proc_id));
  }

  /** GET …/exec/stream/events: the ticket's command as Server-Sent Events, from after Last-Event-ID. */
  private async streamEvents(request: Request, url: URL): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const ticket = url.searchParams.get('ticket');
    const procId = ticket ? await this.tickets.redeem(ticket) : null;
    const row = procId ? this.procs.row(procId) : null;
    const sink = row?.kind === 'stream' ? (this.procs.sink(row.proc_id) as StreamExecSink) : null;
    if (!sink) return errorResponse(new ApiError('UNAUTHORIZED', 'unknown or expired ticket; start the command again with POST …/exec/stream'), requestId);
    const lastId = Number(request.headers.get('last-event-id') ?? url.searchParams.get('last_event_id') ?? '0');
    const after = Number.isSafeInteger(lastId) && lastId > 0 ? lastId : 0;
    this.touch();
    // A viewer that already has the terminal event is told not to reconnect.
    if (sink.log.done() && after >= sink.log.lastSeq()) return new Response(null, { status: 204 });
    return sink.hub.subscribe(after);
  }

  /** POST …/terminal: a login shell on a PTY, for sockets to attach to. */
  async createTerminal(caller: Caller, opts: TerminalOptions): Promise<Result<{ session_id: string }>> {
    const r = await this.require(caller, 'exec');
    if (!r.ok) return r;
    if (!this.link.socket()) return fail('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly");
    return this.terminals.create(caller.org_id, opts);
  }

  async resizeTerminal(caller: Caller, sessionId: string, size: { cols: number; rows: number }): Promise<Result<true>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return this.terminals.resize(caller.org_id, sessionId, size);
  }

  /** A client socket a route authenticated: exec over WebSocket (starts its process) or a terminal viewer. */
  private async openClient(request: Request): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const open = parseClientOpen(request.headers.get(CLIENT_OPEN_HEADER));
    if (!open) return errorResponse(new ApiError('BAD_REQUEST', 'malformed socket request'), requestId);
    if (open.kind === 'terminal') {
      const g = await this.guard(open.caller);
      if (!g.ok) return errorResponse(new ApiError(g.code, g.message), requestId);
      return this.terminals.attach(open.caller.org_id, open.session_id, requestId);
    }
    const r = await this.require(open.caller, 'exec');
    if (!r.ok) return errorResponse(new ApiError(r.code, r.message), requestId);
    if (!this.link.socket()) return errorResponse(new ApiError('AGENT_UNAVAILABLE', "the computer's host agent is not connected; try again shortly"), requestId);
    const res = await this.execSockets.open(open.caller.org_id, open.start, open.subprotocol, requestId);
    await this.scheduleAlarm();
    return res;
  }

  async readMetrics(caller: Caller, window: MetricsWindow): Promise<Result<MetricsView>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    return ok({ ...this.metrics.read(window), credits_per_hour: SIZES[rec.size].credits_per_hour });
  }

  // ------------------------------------------------------------ agent socket

  /** Streams and sockets: the agent's upgrade (host verified by the route), SSE viewers, exec and terminal sockets. */
  async fetch(request: Request): Promise<Response> {
    await this.loaded;
    const url = new URL(request.url);
    if (url.pathname.endsWith('/exec/stream/events')) return this.streamEvents(request, url);
    if (url.pathname.startsWith('/api/v1/')) return this.openClient(request);
    const hostId = request.headers.get('x-hangar-host-id');
    if (!this.rec || !hostId || hostId !== this.rec.host_id) return new Response('computer not found on this host', { status: 404 });
    const pair = new WebSocketPair();
    this.link.accept(pair[1], hostId);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    if (!this.link.isAgentSocket(ws)) {
      const client = clientOf(ws);
      await this.loaded;
      if (client?.kind === 'exec') this.execSockets.onMessage(ws, client.proc_id, data);
      if (client?.kind === 'terminal') this.terminals.onMessage(ws, client.proc_id, data);
      return;
    }
    if (typeof data !== 'string') {
      const frame = decodeFrame(new Uint8Array(data));
      if (!frame || frame.kind !== FRAME_OUTPUT) {
        ws.close(4400, 'malformed frame');
        return;
      }
      await this.loaded;
      this.procs.onOutput(frame);
      return;
    }
    let parsed: ComputerAgentMessage;
    try {
      parsed = ComputerAgentMessage.parse(JSON.parse(data));
    } catch {
      ws.close(4400, 'malformed message');
      return;
    }
    await this.loaded;
    switch (parsed.type) {
      case 'result':
        this.link.onResult(parsed);
        return;
      case 'attached':
        this.link.markAttached(ws, parsed.agent_version);
        // Not awaited: reconciling waits on results that arrive as later messages.
        this.ctx.waitUntil(
          this.lifecycle.reconcile(parsed.state).then(async () => {
            if (this.rec?.status !== 'running') return;
            await this.procs.resumeAll();
            this.stdin.resumeAll();
            await this.execSockets.agentResumed();
          }),
        );
        return;
      case 'metrics':
        this.metrics.add(parsed.ts, parsed.cpu_percent, parsed.memory_percent);
        return;
      case 'computer.exited':
        await this.apply('exited');
        return;
      case 'proc.exit':
        this.procs.onExit(parsed.proc_id, parsed);
        await this.scheduleAlarm();
        return;
      case 'proc.stdin_ack':
        this.stdin.onAck(parsed.proc_id, parsed.offset);
        return;
    }
  }

  async webSocketClose(ws: WebSocket): Promise<void> {
    if (this.link.isAgentSocket(ws)) this.link.onClose(ws);
    else await this.clientGone(ws);
  }

  async webSocketError(ws: WebSocket): Promise<void> {
    if (this.link.isAgentSocket(ws)) this.link.onClose(ws);
    else await this.clientGone(ws);
  }

  private async clientGone(ws: WebSocket): Promise<void> {
    const client = clientOf(ws);
    await this.loaded;
    if (client?.kind === 'exec') await this.execSockets.onClose(ws, client.proc_id);
    if (client?.kind === 'terminal') await this.terminals.onClose(ws, client.proc_id);
  }

  // ------------------------------------------------------------ metering and auto-stop

  private async startMeter(): Promise<void> {
    await this.ctx.storage.put('billed_until', Date.now());
    this.touch();
    await this.scheduleAlarm();
  }

  private async stopMeter(): Promise<void> {
    const from = await this.ctx.storage.get<number>('billed_until');
    if (from !== undefined && this.rec) {
      await charge(this.env.DB, this.rec.org_id, this.rec.id, this.rec.size, Date.now() - from);
      await this.ctx.storage.delete('billed_until');
    }
    await this.scheduleAlarm();
  }

  private async scheduleAlarm(): Promise<void> {
    const rec = this.rec;
    const at = nextAlarm({
      running: rec?.status === 'running',
      billedUntil: (await this.ctx.storage.get<number>('billed_until')) ?? Date.now(),
      autoStopS: rec?.auto_stop ?? 0,
      lastActivity: this.lastActivity,
      busy: this.procs.hasRunning(),
      logExpiry: this.procs.nextExpiry(),
      terminalExpiry: this.terminals.nextExpiry(),
    });
    if (at === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(Math.max(at, Date.now() + 10));
  }

  /** Billing, auto-stop and dropping old command logs, whichever is due. */
  async alarm(): Promise<void> {
    await this.loaded;
    this.procs.sweep();
    await this.terminals.expireIdle();
    const rec = this.rec;
    if (!rec || rec.status !== 'running') return this.scheduleAlarm();
    await this.ctx.storage.put('last_activity', this.lastActivity);
    const now = Date.now();
    const billedUntil = (await this.ctx.storage.get<number>('billed_until')) ?? now;
    let balance: number | null = null;
    if (now - billedUntil >= BILLING_INTERVAL_MS) {
      balance = await charge(this.env.DB, rec.org_id, rec.id, rec.size, now - billedUntil);
      await this.ctx.storage.put('billed_until', now);
    }
    const broke = (balance ?? (await balanceOf(this.env.DB, rec.org_id))) <= 0;
    // A running command or an open terminal is activity too.
    const idle = rec.auto_stop > 0 && !this.procs.hasRunning() && now - this.lastActivity >= rec.auto_stop * 1000;
    if (broke || idle) {
      const r = await this.lifecycle.run('stop');
      if (r.ok) return;
      // The agent is away or refused: try again later. The stop stays due, so neither
      // re-arm at the (past) deadline, which would spin, nor drop the alarm, which would run free.
      if (this.rec?.status === 'running') await this.ctx.storage.setAlarm(now + STOP_RETRY_MS);
      return;
    }
    await this.scheduleAlarm();
  }
}
