/**
 * One ComputerObject per computer. It owns the computer's status (persisted
 * before every side effect, mirrored to D1 for lists), the socket of the host
 * agent that serves it, its metrics, its streams (commands, exec sockets,
 * terminals), its credit burn and its auto-stop alarm. Route handlers call its
 * RPC methods, which answer Result values; who may do what is checked here,
 * the work is done by the modules it is composed of.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import { FRAME_DISK, FRAME_OUTPUT, decodeFrame, frameKind, parseAgentMessage, speaks, type ComputerNotice, type ComputerSpec } from '../schema/protocol.ts';
import type { SyncExecParams, SyncExecResult } from './exec/sync-exec.ts';
import { ApiError, fail, ok, type Result } from '../schema/errors.ts';
import { SIZES, type Size } from '../schema/sizes.ts';
import { resizedDiskGb } from '../worker/computers/disk-size.ts';
import { AgentLink } from './agent-link.ts';
import { ALREADY_STARTING, REFUSAL, REQUIRES, transition, type LifecycleEvent, type Status } from './computer/state-table.ts';
import { callerAccess, mirrorMemoryKept, mirrorStatus, type Caller, type ComputerRecord } from './computer/record.ts';
import { MetricsStore, type MetricsWindow, type Point } from './computer/metrics-store.ts';
import { balanceOf } from './computer/usage.ts';
import { Lifecycle } from './computer/lifecycle.ts';
import { Upkeep } from './computer/upkeep.ts';
import { Mover, type MoveTarget } from './computer/move.ts';
import { loadComputerEnv } from '../worker/crypto/env-cipher.ts';
import { Streams } from './exec/streams.ts';
import { ComputerEvents, reasonFor, startsOperation, type Why } from './computer/events.ts';
import { fileOp, type FsAnswerOf } from './files/file-ops.ts';
import { WatchSockets } from './events/watch-sockets.ts';
import { SystemLog, type LogLine } from './computer/system-log.ts';
import { FileTransfers } from './files/file-transfers.ts';
import { FILE_OP_HEADER, serveFileRequest } from './files/file-requests.ts';
import { CREDENTIAL_HEADER } from './computer/system-log.ts';
import { CLIENT_OPEN_HEADER, parseClientOpen } from './exec/client-sockets.ts';
import type { EventsOpen } from '../schema/events.ts';
import { errorResponse } from '../worker/http/responses.ts';
import type { FsOp, FsRequest } from '../schema/guest.ts';
import type { TerminalOptions } from './exec/terminal.ts';
import { RelayMux } from './relay/relay-mux.ts';
import { ComputerRelay } from './relay/computer-relay.ts';
import type { PortRecord } from './relay/port-table.ts';
import { RELAY_PATH } from './relay/relay-request.ts';
import { ComputerDesktop } from './desktop/computer-desktop.ts';
import { desktopStartPolicy, hostAccel } from './desktop/start-policy.ts';
import { DESKTOP_VIEWER_PATH } from './desktop/viewer-request.ts';
import type { DesktopResult } from './desktop/desktop-daemon.ts';
import type { DaemonAnswer } from './desktop/daemon-connection.ts';
import type { DaemonOp } from '../schema/desktop.ts';
import { ComputerSnapshots } from './snapshots/computer-snapshots.ts';
import type { Snapshot } from './snapshots/snapshot-rows.ts';
import { HeldCredentials } from './credentials/held-credentials.ts';
import { apiKeyLive } from '../worker/tenancy/principals.ts';
import { hasRoom, noRoomOnHost, reserveStart } from '../worker/computers/placement.ts';

const NOT_FOUND = 'computer not found';
/** The protocol minor that brought the shipped system log. */
const LOGS_MINOR = 6;

/** A notice to the agent (no answer expected); a closing socket just misses it. */
function sendNotice(ws: WebSocket, notice: ComputerNotice): void {
  try {
    ws.send(JSON.stringify(notice));
  } catch {
    /* the agent asks again after it reconnects */
  }
}

export interface MetricsView {
  cpu_percent: Point[];
  memory_percent: Point[];
  credits_per_hour: number;
}

export class ComputerObject extends DurableObject<Env> {
  private rec: ComputerRecord | null = null;
  private loaded: Promise<void>;
  readonly link: AgentLink;
  /** While moving: the socket of the agent of the host the disk goes to. */
  readonly target: AgentLink;
  readonly mover: Mover;
  private readonly metrics: MetricsStore;
  private readonly lifecycle: Lifecycle;
  readonly streams: Streams;
  private readonly upkeep: Upkeep;
  /** Connections to the computer's ports, relayed over the agent socket (durable-objects/relay/). */
  readonly relay: RelayMux;
  private readonly ports: ComputerRelay;
  readonly events: ComputerEvents;
  private readonly watchSockets: WatchSockets;
  private readonly systemLog: SystemLog;
  private readonly transfers: FileTransfers;
  readonly snapshots: ComputerSnapshots;
  private readonly held: HeldCredentials;
  /** The desktop: its daemon inside the computer, VNC viewers, the viewer password (durable-objects/desktop/). */
  readonly desktop: ComputerDesktop;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.events = new ComputerEvents(ctx, env, () => this.rec);
    this.link = new AgentLink(ctx);
    this.target = new AgentLink(ctx, 'agent-target');
    this.mover = new Mover(this, env);
    // The desktop's producers look at it through its daemon (this.desktop is made below; looks come later).
    this.watchSockets = new WatchSockets(ctx, this.link, (args, timeoutMs, waitMs) => this.desktop.daemon.call('state', args, timeoutMs, waitMs));
    this.systemLog = new SystemLog(ctx.storage.sql);
    this.metrics = new MetricsStore(ctx.storage.sql);
    this.lifecycle = new Lifecycle(this, env.DB);
    this.held = new HeldCredentials(ctx, (id) => apiKeyLive(env, id, { fresh: true }));
    this.streams = new Streams(ctx, this.link, this.held, () => this.upkeep.schedule(), {}, this.events.sessions);
    this.relay = new RelayMux(this.link, () => this.touch());
    this.transfers = new FileTransfers(this.relay, this.link);
    this.snapshots = new ComputerSnapshots(this, env);
    this.ports = new ComputerRelay(this.relay, {
      // A relayed connection follows the credentials contract too: a revoked key opens nothing.
      requireRunning: (caller) => this.requireLive(caller),
      record: () => this.rec,
      ready: () => this.rec?.status === 'running' && this.link.socket() !== null,
      whenAttached: (ms) => this.link.whenAttached(ms),
      // A preview request that may wake the computer starts it as its organization would.
      start: async () => (this.rec ? this.start({ org_id: this.rec.org_id, workspace_ids: null, project_ids: null, credential_id: null }) : fail('NOT_FOUND', NOT_FOUND)),
      storage: ctx.storage,
      env,
    });
    this.desktop = new ComputerDesktop(ctx, {
      record: () => this.rec,
      requireRunning: (caller) => this.requireLive(caller),
      relay: this.relay,
      exec: (params, timeoutMs) => this.link.request('exec.run', { params }, timeoutMs),
      policy: () => desktopStartPolicy(env.DESKTOP_START, this.rec?.isolation ?? 'sandbox', () => hostAccel(env.DB, this.rec?.host_id)),
      viewersChanged: () => void this.upkeep.schedule(),
    });
    this.upkeep = new Upkeep(ctx, env, {
      record: () => this.rec,
      // A desktop someone is watching is in use even while its screen is still.
      busy: () => this.streams.busy() || this.desktop.viewers.count() > 0,
      expiries: () => this.streams.expiries(),
      sweep: () => this.streams.sweep(),
      stop: async (reason) => (await this.lifecycle.run('stop', { reason })).ok,
    });
    this.loaded = ctx.blockConcurrencyWhile(async () => {
      this.rec = (await ctx.storage.get<ComputerRecord>('record')) ?? null;
      await this.upkeep.load();
    });
  }

  // ------------------------------------------------------------ state

  get record(): ComputerRecord | null {
    return this.rec;
  }

  /**
   * Applies a lifecycle event: the new status is in memory at once (so racing
   * calls see it), then stored, then in D1. `why` says what caused it: its
   * reason goes to the event log (an operation's reason carries over to its
   * outcome), and its message, if any, is the `status_reason` shown with the
   * new status (none: nothing to explain).
   */
  async apply(event: LifecycleEvent, why?: Why): Promise<Status | null> {
    const reason = why?.message ?? null;
    const rec = this.rec;
    if (!rec) return null;
    const next = transition(rec.status, event);
    if (!next) return null;
    if (next !== rec.status || reason !== (rec.status_reason ?? null)) {
      const wasRunning = rec.status === 'running';
      const changed = next !== rec.status;
      if (changed) {
        const because = why ?? reasonFor(event, rec.pending_why);
        this.events.status(rec.status, next, because);
        rec.pending_why = startsOperation(event) ? because : undefined;
      }
      rec.status = next;
      rec.status_reason = reason;
      await this.ctx.storage.put('record', rec);
      await mirrorStatus(this.env.DB, rec.id, next, reason);
      if (!changed) return next;
      if (next === 'running' && !wasRunning) {
        await this.upkeep.started();
        this.desktop.onRunning();
      }
      if (wasRunning && next !== 'running') {
        // Whatever ran in the computer is gone with it; its viewers get an honest error event.
        this.streams.procs.loseAll(`the computer is ${next === 'restarting' ? 'restarting' : 'stopped'}; the command ended with it`);
        this.relay.resetAll('unreachable', `the computer is ${next === 'restarting' ? 'restarting' : 'stopped'}`);
        this.desktop.onStopped();
        this.watchSockets.closeAll(`the computer is ${next === 'restarting' ? 'restarting' : 'stopped'}`);
        await this.upkeep.stopped(rec);
      }
    }
    return next;
  }

  /** Takes room on the host for a start (D1 shows `starting` once it has it); false when there is none. */
  async reserveStart(): Promise<boolean> {
    const rec = this.rec;
    return !!rec && reserveStart(this.env, rec.host_id, rec.id, rec.size);
  }

  /** The caller may use the running computer, with a credential that is not revoked (relayed streams, sockets). */
  private async requireLive(caller: Caller): Promise<Result<ComputerRecord>> {
    const r = await this.require(caller, 'exec');
    if (r.ok && !(await this.held.admits(caller.credential_id))) return fail('UNAUTHORIZED', 'credential revoked');
    return r;
  }

  /** Keeps the object alive for work that outlives the call that started it. */
  waitUntil(p: Promise<unknown>): void {
    this.ctx.waitUntil(p);
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
      isolation: rec.isolation ?? 'sandbox',
      disk_gb: rec.disk_gb,
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
    this.upkeep.touch();
  }

  // ------------------------------------------------------------ RPC: lifecycle

  /** Records a new computer (provisioning) and asks its host's agent to attach. */
  async create(rec: ComputerRecord): Promise<Result<Status>> {
    await this.loaded;
    if (this.rec) return fail('CONFLICT', 'computer already exists');
    // Made from a snapshot: its provisioning ends with the reason `restored`.
    const restored = rec.restore_snapshot ? { pending_why: { reason: 'restored' as const, details: { snapshot_id: rec.restore_snapshot } } } : {};
    this.rec = { ...rec, ...restored, status: 'provisioning' };
    await this.ctx.storage.put('record', this.rec);
    this.events.emit('computer.created', {
      status: 'provisioning',
      reason: 'created',
      name: rec.name,
      size: rec.size,
      template_type: rec.template_type,
      ...(rec.clone_from && { cloned_from: rec.clone_from }),
      ...(rec.restore_snapshot && { restored_from: rec.restore_snapshot }),
    });
    if (rec.restore_snapshot) {
      this.snapshots.progress(rec.restore_snapshot, { operation: 'restore', step: 'copying', fraction: 0.1, status: 'ready', target_computer_id: rec.id });
    }
    await this.ctx.storage.put('last_activity', Date.now());
    const host = this.env.HOST.get(this.env.HOST.idFromName(rec.host_id));
    await host.attach(rec.id);
    return ok('provisioning');
  }

  async start(caller: Caller): Promise<Result<Status>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    // Running, or on its way there: "create, then start, then wait" works, and nothing is done twice.
    if (ALREADY_STARTING.has(rec.status)) return ok(rec.status);
    if (!transition(rec.status, 'start')) return fail('INVALID_STATE_TRANSITION', REFUSAL.start);
    if (rec.status === 'error' && rec.broken !== 'boot') {
      return fail('INVALID_STATE_TRANSITION', `computer cannot be started: ${rec.status_reason ?? 'it is broken'}; it can only be deleted`);
    }
    if ((await balanceOf(this.env.DB, rec.org_id)) <= 0) return fail('INSUFFICIENT_CREDITS', 'not enough credits to start this computer');
    return this.lifecycle.run('start');
  }

  /** Stops the computer; `keepMemory` (a VM) keeps its memory on the host so the next start resumes it. */
  async stop(caller: Caller, keepMemory = false): Promise<Result<Status>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    if (!transition(rec.status, 'stop')) return fail('INVALID_STATE_TRANSITION', REFUSAL.stop);
    if (keepMemory && (rec.isolation ?? 'sandbox') !== 'vm') return fail('BAD_REQUEST', 'keep_memory is for computers with isolation "vm"');
    await this.save({ keep_memory: keepMemory || undefined });
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
    await this.mover.cancel('the computer is being deleted');
    await this.apply('delete');
    await this.snapshots.computerDeleted(g.value);
    if (this.link.socket()) await this.link.request('computer.destroy', {}, 120_000);
    this.events.emit('computer.deleted', { status: 'deleted', reason: 'requested' });
    // The object's storage (and its outbox) goes with the computer: the last events leave first.
    if (!(await this.events.flush())) console.error(`computer ${g.value.id}: its last events could not be sent before deletion`);
    await this.forget();
    return ok(true);
  }

  /** Erases the object's storage; later calls find no computer. Every viewer, socket and ticket of it ends. */
  async forget(): Promise<void> {
    this.rec = null;
    this.relay.resetAll('closed', 'the computer was deleted');
    this.desktop.onStopped();
    this.streams.closeViewers();
    this.systemLog.closeViewers();
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
    // Stopped, it holds no room; but a size its host cannot start is no use to anyone.
    if (size !== r.value.size && !(await hasRoom(this.env, r.value.host_id, r.value.id, size))) {
      const err = noRoomOnHost('start it as', size);
      return fail(err.code, err.message);
    }
    const disk_gb = resizedDiskGb(this.env, { disk_gb: r.value.disk_gb ?? null, size: r.value.size }, size);
    // New hardware: memory a VM kept cannot be resumed on it (its agent drops it).
    await this.save({ size, vcpus: SIZES[size].vcpus, memory_mb: SIZES[size].memory_mb, disk_gb, memory_kept: false });
    await mirrorMemoryKept(this.env.DB, r.value.id, false);
    // The limits take effect at the next boot; an attached agent also records them now.
    if (this.link.socket()) await this.link.request('computer.resize', { spec: await this.spec() }, 30_000);
    return ok(r.value.status);
  }

  /** Moves the stopped computer's disk to a host of another region; answers once it lives there (or is back, stopped, where it was). */
  async move(caller: Caller, target: MoveTarget): Promise<Result<Status>> {
    const r = await this.require(caller, 'move');
    if (!r.ok) return r;
    return this.mover.run(target);
  }

  // ------------------------------------------------------------ RPC: snapshots

  /** Takes a snapshot of the running or stopped computer (answers once it is ready, or pending after a few seconds). */
  async createSnapshot(caller: Caller, opts: { comment: string | null; keep: boolean }): Promise<Result<Snapshot>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return this.snapshots.create(g.value, opts);
  }

  /** Makes the stopped computer's disk a copy of one of its snapshots; answers once done (the computer stays stopped). */
  async restoreSnapshot(caller: Caller, snapshotId: string): Promise<Result<Snapshot>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return this.snapshots.restoreInPlace(g.value, snapshotId);
  }

  async deleteSnapshot(caller: Caller, snapshotId: string): Promise<Result<true>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return this.snapshots.delete(g.value, snapshotId);
  }

  async setAutoStop(caller: Caller, seconds: number): Promise<Result<number>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    await this.save({ auto_stop: seconds });
    await this.upkeep.schedule();
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

  /**
   * Sync exec: a process like a streamed one (exec/sync-exec.ts), so a
   * dropped agent socket loses nothing of it and a retry with the same
   * Idempotency-Key gets its result instead of running it again.
   */
  async exec(caller: Caller, params: SyncExecParams): Promise<Result<SyncExecResult>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    const mayStart = () => (rec.status !== REQUIRES.exec ? fail('COMPUTER_NOT_RUNNING', 'computer is not running') : ok(true));
    const res = await this.streams.syncExecs.run(caller.org_id, params, mayStart);
    this.touch();
    // The command no longer keeps the computer busy: auto-stop may count from now. After the
    // answer has gone (a storage write before it would hold it back until the write is done).
    if (rec.auto_stop > 0) setTimeout(() => void this.upkeep.schedule().catch((e: unknown) => console.error('scheduling upkeep failed', e)), 0);
    return res;
  }

  /** Starts a streamed command (output kept from its first byte) and issues the ticket its SSE stream needs. */
  async startStream(caller: Caller, params: { command: string; timeout_s: number; shell: string }): Promise<Result<{ ticket: string; expires_at: number }>> {
    const r = await this.require(caller, 'exec');
    if (!r.ok) return r;
    const t = await this.streams.startStream(caller, params);
    await this.upkeep.schedule();
    return t;
  }

  /** POST …/terminal: a login shell on a PTY, for sockets to attach to. */
  async createTerminal(caller: Caller, opts: TerminalOptions): Promise<Result<{ session_id: string }>> {
    const r = await this.require(caller, 'exec');
    if (!r.ok) return r;
    return this.streams.createTerminal(caller.org_id, opts);
  }

  async resizeTerminal(caller: Caller, sessionId: string, size: { cols: number; rows: number }): Promise<Result<true>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return this.streams.terminals.resize(caller.org_id, sessionId, size);
  }

  /** One file operation in the running computer (done by its guest as `user`). */
  async fs<O extends FsOp>(caller: Caller, request: Extract<FsRequest, { op: O }>): Promise<Result<FsAnswerOf<O>>> {
    const r = await this.require(caller, 'exec');
    if (!r.ok) return r;
    return fileOp(this.link, request);
  }

  /** The last lines of the computer's system log (running or not). */
  async readLogs(caller: Caller, lines: number, since?: string): Promise<Result<{ lines: LogLine[]; last_id: number }>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return ok({ lines: this.systemLog.tail(lines, since), last_id: this.systemLog.lastId() });
  }

  async readMetrics(caller: Caller, window: MetricsWindow): Promise<Result<MetricsView>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    const rec = g.value;
    return ok({ ...this.metrics.read(window), credits_per_hour: SIZES[rec.size].credits_per_hour });
  }

  // ------------------------------------------------------------ RPC: desktop

  /** One desktop control call (schema/desktop.ts), relayed to the daemon inside the computer. */
  async desktopCall(caller: Caller, op: DaemonOp, args: Record<string, unknown>, timeoutMs: number): Promise<DesktopResult<DaemonAnswer>> {
    const r = await this.desktop.call(caller, op, args, timeoutMs);
    this.touch();
    return r;
  }

  async desktopWait(caller: Caller, ms: number, shot: { screenshot?: { delay_ms: number } }): Promise<DesktopResult<DaemonAnswer>> {
    return this.desktop.wait(caller, ms, shot);
  }

  /** The viewer password for native VNC clients (made on first use). */
  async viewerPassword(caller: Caller, rotate: boolean): Promise<Result<{ password: string; created_at: string }>> {
    const g = await this.guard(caller);
    if (!g.ok) return g;
    return ok(rotate ? await this.desktop.rotatePassword() : await this.desktop.password.get());
  }

  // ------------------------------------------------------------ RPC: credentials

  /**
   * An API key was revoked (worker/credentials/revocation.ts): the tickets
   * minted with it stop working, and the sockets and viewers opened with it
   * close now. Answers how many were closed.
   */
  async endCredential(credentialId: string): Promise<number> {
    await this.loaded;
    // A deleted computer holds nothing (and its tables are gone with its storage).
    if (!this.rec) return 0;
    const relayed = this.relay.resetWhere((tags) => tags.credential_id === credentialId, 'closed', 'credential revoked');
    return relayed + this.streams.endCredential(credentialId);
  }

  // ------------------------------------------------------------ RPC: relayed ports (relay/computer-relay.ts)

  /** A preview link's one-time ticket for `port`: ok the first time, used after, not_exposed when the port is gone. */
  async redeemPreviewTicket(jti: string, expS: number, port: number): Promise<'ok' | 'used' | 'not_exposed'> {
    await this.loaded;
    return this.ports.redeemTicket(jti, expS, port);
  }

  /** A port's record changed in D1 (null: no longer exposed); `close` ends its open connections with that message. */
  async portChanged(port: number, rec: PortRecord | null, close: string | null): Promise<void> {
    await this.loaded;
    await this.ports.portChanged(port, rec, close);
  }

  // ------------------------------------------------------------ agent socket

  /** Streams and sockets: the agent's upgrade (host verified by the route), SSE viewers, exec and terminal sockets. */
  async fetch(request: Request): Promise<Response> {
    await this.loaded;
    const url = new URL(request.url);
    if (url.pathname === RELAY_PATH) return this.ports.fetch(request);
    if (url.pathname === DESKTOP_VIEWER_PATH) return this.desktop.viewers.fetch(request);
    if (request.headers.has(FILE_OP_HEADER)) {
      this.touch();
      // File bytes are relayed streams too: tagged with their credential, refused once it is revoked.
      return serveFileRequest({ link: this.link, transfers: this.transfers, requireRunning: (caller) => this.requireLive(caller) }, request);
    }
    if (url.pathname.endsWith('/logs/stream')) {
      // The route checked the caller and the query.
      const requestId = request.headers.get('x-request-id') ?? '';
      if (!this.rec) return errorResponse(new ApiError('NOT_FOUND', NOT_FOUND), requestId);
      const credential = request.headers.get(CREDENTIAL_HEADER) || null;
      if (!(await this.held.admits(credential))) return errorResponse(new ApiError('UNAUTHORIZED', 'credential revoked'), requestId);
      // The viewer ends when it goes away, or when the key it was opened with is revoked.
      const viewer = new AbortController();
      request.signal?.addEventListener('abort', () => viewer.abort());
      const untrack = this.held.track(credential, () => viewer.abort());
      return this.systemLog.follow(request.headers.get('last-event-id'), Number(request.headers.get('x-hangar-log-tail') ?? '0'), viewer.signal, untrack);
    }
    if (url.pathname.endsWith('/exec/stream/events')) {
      // A deleted computer's tickets went with its storage.
      if (!this.rec) return errorResponse(new ApiError('UNAUTHORIZED', 'unknown or expired ticket; start the command again with POST …/exec/stream'), request.headers.get('x-request-id') ?? '');
      this.touch();
      return this.streams.streamEvents(request, url);
    }
    if (url.pathname.startsWith('/api/v1/')) {
      const open = parseClientOpen(request.headers.get(CLIENT_OPEN_HEADER));
      if (open?.kind === 'events') return this.openEvents(open.caller, open.open, request.headers.get('x-request-id') ?? '');
      const res = await this.streams.openClient(request, (caller, op) => (op === 'exec' ? this.require(caller, 'exec') : this.guard(caller)));
      await this.upkeep.schedule();
      return res;
    }
    const hostId = request.headers.get('x-hangar-host-id');
    // The computer's own host, or during a move the host its disk is going to.
    const link = !hostId || !this.rec ? null : hostId === this.rec.host_id ? this.link : hostId === this.rec.moving_to_host_id ? this.target : null;
    if (!link || !hostId) return new Response('computer not found on this host', { status: 404 });
    const pair = new WebSocketPair();
    link.accept(pair[1], hostId);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** GET …/events with an upgrade: a socket of events from inside the running computer. */
  private async openEvents(caller: Caller, open: EventsOpen, requestId: string): Promise<Response> {
    const r = await this.requireLive(caller);
    if (!r.ok) return errorResponse(new ApiError(r.code, r.message), requestId);
    return this.watchSockets.open(open, requestId, this.held.tags(caller.credential_id));
  }

  async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    if (this.target.isAgentSocket(ws)) {
      await this.loaded;
      this.mover.onTargetMessage(ws, data);
      return;
    }
    if (!this.link.isAgentSocket(ws)) {
      await this.loaded;
      this.touch();
      this.streams.onClientMessage(ws, data);
      return;
    }
    if (typeof data !== 'string' && this.relay.onBinary(ws, data)) return;
    if (typeof data !== 'string' && frameKind(new Uint8Array(data)) === FRAME_DISK) {
      await this.loaded;
      this.mover.onDiskFrame(data);
      return;
    }
    if (typeof data !== 'string') {
      const frame = decodeFrame(new Uint8Array(data));
      if (!frame || frame.kind !== FRAME_OUTPUT) {
        ws.close(4400, 'malformed frame');
        return;
      }
      await this.loaded;
      this.streams.onOutput(frame);
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      raw = undefined;
    }
    if (raw !== undefined && this.relay.onJson(ws, raw)) return;
    const parsed = parseAgentMessage(raw);
    if (!parsed) {
      ws.close(4400, 'malformed message');
      return;
    }
    await this.loaded;
    switch (parsed.type) {
      case 'result':
        this.link.onResult(parsed);
        return;
      case 'attached':
        this.link.markAttached(ws, parsed.agent_version, parsed.protocol);
        if (speaks(parsed.protocol, LOGS_MINOR)) sendNotice(ws, { type: 'log.follow', offset: this.systemLog.next() });
        // Not awaited: reconciling waits on results that arrive as later messages.
        this.ctx.waitUntil(
          this.lifecycle.reconcile(parsed.state).then(async () => {
            if (this.rec?.status !== 'running') return;
            await this.streams.agentResumed();
            await this.watchSockets.agentResumed();
          }),
        );
        return;
      case 'metrics':
        this.metrics.add(parsed.ts, parsed.cpu_percent, parsed.memory_percent, parsed.disk_percent ?? null);
        return;
      case 'computer.exited':
        await this.apply('exited', { reason: 'exited', message: parsed.reason });
        return;
      case 'proc.exit':
        this.streams.procs.onExit(parsed.proc_id, parsed);
        await this.upkeep.schedule();
        return;
      case 'proc.stdin_ack':
        this.streams.onStdinAck(parsed.proc_id, parsed.offset);
        return;
      case 'disk.ack':
      case 'disk.cancel':
        return; // only the move target's count (computer/move.ts)
      case 'watch.events':
        this.watchSockets.onEvents(parsed.watch_id, parsed.events);
        return;
      case 'log.lines': {
        const stored = this.systemLog.take(parsed);
        if (stored !== null) sendNotice(ws, { type: 'log.ack', offset: stored });
        return;
      }
    }
  }

  async webSocketClose(ws: WebSocket): Promise<void> {
    await this.socketGone(ws);
  }

  async webSocketError(ws: WebSocket): Promise<void> {
    await this.socketGone(ws);
  }

  private async socketGone(ws: WebSocket): Promise<void> {
    if (this.link.isAgentSocket(ws)) {
      this.link.onClose(ws);
      this.relay.linkGone(ws);
      // Processes kept in memory only must outlive this connection: the next agent re-attaches them.
      await this.loaded;
      if (this.rec) this.streams.procs.persistAll();
    } else if (this.target.isAgentSocket(ws)) {
      this.target.onClose(ws);
      this.mover.onTargetClosed();
    } else await this.clientGone(ws);
  }

  private async clientGone(ws: WebSocket): Promise<void> {
    await this.loaded;
    if (this.watchSockets.isEventsSocket(ws)) await this.watchSockets.onClose(ws);
    else await this.streams.onClientGone(ws);
  }

  /** Billing, auto-stop and expiries: see computer/upkeep.ts. */
  async alarm(): Promise<void> {
    await this.loaded;
    await this.upkeep.run();
  }
}
