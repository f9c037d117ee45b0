/**
 * The HostObject's side of a tenant host (OpenComputers): "a computer whose
 * sandbox is the machine itself". It holds the host-mode agent's socket
 * (AgentLink), the host's streamed processes (Streams: jobs and terminals),
 * its secrets, status and events, and answers the routes' RPC calls. The
 * agent's socket may drop and come back: processes go on where they were,
 * and only a host away longer than the lost-host grace fails its jobs.
 */
import { ApiError, fail, ok, type Result } from '../../schema/errors.ts';
import {
  FRAME_OUTPUT,
  HostModeAgentMessage,
  HostModeHello,
  PROTOCOL,
  decodeFrame,
  type HostModeNotice,
  type HostServerMessage,
} from '../../schema/protocol.ts';
import type { HostStatus } from '../../schema/db.ts';
import type { Env } from '../../worker/env.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import { AgentLink } from '../agent-link.ts';
import { HeldCredentials } from '../credentials/held-credentials.ts';
import { CREDENTIAL_HEADER } from './client-header.ts';
import { apiKeyLive } from '../../worker/tenancy/principals.ts';
import { Streams } from '../exec/streams.ts';
import { RelayMux } from '../relay/relay-mux.ts';
import { HostRelay } from '../relay/host-relay.ts';
import { HostFiles, uploadLimit } from './host-files.ts';
import { HostEvents, type HostEventType } from './host-events.ts';
import { HostSecrets } from './host-secrets.ts';
import { HostStatusKeeper, helloColumns } from './host-status.ts';
import { Jobs, type JobSpec } from './jobs.ts';
import type { JobRow } from './job-table.ts';
import { TerminalTickets } from './terminal-tickets.ts';
import { HostDesktop } from './host-desktop.ts';
import { HostModels } from './host-models.ts';

export const HEARTBEAT_INTERVAL_MS = 15_000;
/** An agent silent this long is closed and the host offline, even if TCP has not noticed. */
const SILENCE_LIMIT_MS = 3 * HEARTBEAT_INTERVAL_MS;
/** A host away longer than this (HOST_LOST_GRACE_S) fails its running jobs with reason `host_lost`. */
export const DEFAULT_HOST_LOST_GRACE_S = 300;
const LAST_SEEN_WRITE_MS = 60_000;
/** How long a host may be away before what runs on it is lost (HOST_LOST_GRACE_S), in ms. */
export function hostLostGraceMs(env: { HOST_LOST_GRACE_S?: string }): number {
  const s = Number(env.HOST_LOST_GRACE_S ?? DEFAULT_HOST_LOST_GRACE_S);
  return (Number.isFinite(s) && s > 0 ? s : DEFAULT_HOST_LOST_GRACE_S) * 1000;
}
/** Close codes the host-mode agent acts on (it stops for 4401, 4406 and 4412). */
export const HOST_CLOSE = { REVOKED: 4401, MALFORMED: 4400, UNSUPPORTED_PROTOCOL: 4406, SILENT: 4408, PREFLIGHT_FAILED: 4412 } as const;

/** The host a route found in D1 for its tenant. */
export interface HostRef {
  id: string;
  org_id: string;
}

/** What the agent told of itself that the object needs later. */
interface AgentFacts {
  shell: string | null;
  terminal: boolean;
}

const REVOKED = 'the API key this was opened with is revoked';
const OFFLINE = "the host's agent is not connected; the command cannot be dispatched (start hangar-agent on the host)";

export class TenantHost {
  readonly link: AgentLink;
  /** Relayed streams on the agent's socket: TCP to the machine's loopback (tunnels), files. */
  readonly relay: RelayMux;
  /** Tunnels to the machine's ports (durable-objects/relay/host-relay.ts). */
  readonly tunnels: HostRelay;
  readonly files: HostFiles;
  readonly streams: Streams;
  readonly jobs: Jobs;
  readonly secrets: HostSecrets;
  /** The inference clusters this host serves a model for (protocol 1.9). */
  readonly models: HostModels;
  /** API keys behind the host's client connections (terminals, viewers, file transfers): revoking one ends them. */
  readonly held: HeldCredentials;
  private readonly tickets: TerminalTickets;
  /** VNC to the machine's own VNC server (host-desktop.ts). */
  readonly desktop: HostDesktop;
  private readonly status: HostStatusKeeper;
  private eventsOf: HostEvents | null = null;
  private ref: HostRef | null = null;
  private lastMessageAt = 0;
  private lastSeenWritten = 0;

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly env: Env,
    /** Re-arms the object's alarm. */
    private readonly schedule: () => Promise<void>,
  ) {
    const sql = ctx.storage.sql;
    this.link = new AgentLink(ctx);
    this.relay = new RelayMux(this.link);
    this.tunnels = new HostRelay(this.relay, {
      host: (ref) => this.bind(ref),
      connected: () => this.link.socket() !== null,
      whenAttached: (ms) => this.link.whenAttached(ms),
      gone: async () => ((await this.status.current()) === 'revoked' ? 'the host was revoked' : null),
      storage: ctx.storage,
      env,
    });
    this.files = new HostFiles(this.link, this.relay, () => uploadLimit(env));
    this.secrets = new HostSecrets(env);
    this.models = new HostModels(ctx.storage, env, this.link, (p) => ctx.waitUntil(p));
    this.jobs = new Jobs(sql, {
      procs: () => this.streams.procs,
      link: this.link,
      secrets: () => this.secrets.set(),
      event: (type, job) => this.event(type, jobEventData(job)),
    });
    this.held = new HeldCredentials(ctx, (id) => apiKeyLive(env, id, { fresh: true }));
    this.streams = new Streams(ctx, this.link, this.held, schedule, { job: (row) => this.jobs.sink(row) });
    this.tickets = new TerminalTickets(sql);
    this.desktop = new HostDesktop({ usable: (ref) => this.usable(ref), relay: this.relay, tickets: this.tickets, admits: (id) => this.held.admits(id) });
    this.status = new HostStatusKeeper(ctx.storage, env.DB, (status, reason) => this.event('status_change', { status, reason }));
  }

  /** Who this host is, remembered from the first call that said so. */
  async bind(ref?: HostRef): Promise<HostRef | null> {
    this.ref ??= (await this.ctx.storage.get<HostRef>('ref')) ?? null;
    if (!this.ref && ref) {
      this.ref = { id: ref.id, org_id: ref.org_id };
      await this.ctx.storage.put('ref', this.ref);
    }
    return this.ref;
  }

  get events(): HostEvents | null {
    if (!this.eventsOf && this.ref) this.eventsOf = new HostEvents(this.ctx.storage.sql, this.ref.id);
    return this.eventsOf;
  }

  event(type: HostEventType, data: Record<string, unknown>): void {
    this.events?.publish(type, data);
  }

  /** Output waits for the secrets, so nothing reaches a record or a viewer unmasked. */
  private async ready(): Promise<void> {
    const ref = await this.bind();
    if (ref) await this.secrets.ready(ref.org_id, ref.id);
  }

  // ------------------------------------------------------------ the agent's socket

  async acceptAgent(ref: HostRef): Promise<Response> {
    await this.bind(ref);
    const pair = new WebSocketPair();
    this.link.accept(pair[1], ref.id);
    this.lastMessageAt = Date.now();
    await this.ctx.storage.put('last_message_at', this.lastMessageAt);
    await this.schedule();
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  async onAgentMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    this.lastMessageAt = Date.now();
    if (typeof data !== 'string') {
      if (this.relay.onBinary(ws, data)) return;
      const frame = decodeFrame(new Uint8Array(data));
      if (!frame || frame.kind !== FRAME_OUTPUT) {
        ws.close(HOST_CLOSE.MALFORMED, 'malformed frame');
        return;
      }
      await this.ready();
      this.streams.onOutput(frame);
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      raw = null;
    }
    if (this.relay.onJson(ws, raw)) return;
    if ((raw as { type?: unknown } | null)?.type === 'hello') return this.hello(ws, raw);
    if (HostModels.handles(raw)) {
      const ref = await this.bind();
      if (ref) await this.models.onStatus(ref.id, raw);
      return;
    }
    const parsed = HostModeAgentMessage.safeParse(raw);
    if (!parsed.success) {
      ws.close(HOST_CLOSE.MALFORMED, 'malformed message');
      return;
    }
    const msg = parsed.data;
    switch (msg.type) {
      case 'result':
        this.link.onResult(msg);
        return;
      case 'heartbeat':
        await this.ctx.storage.put('last_message_at', this.lastMessageAt);
        if (this.lastMessageAt - this.lastSeenWritten > LAST_SEEN_WRITE_MS && this.ref) {
          this.lastSeenWritten = this.lastMessageAt;
          await this.status.seen(this.ref.id);
        }
        return;
      case 'proc.exit':
        await this.ready();
        this.streams.procs.onExit(msg.proc_id, msg);
        await this.schedule();
        return;
      case 'proc.stdin_ack':
        this.streams.onStdinAck(msg.proc_id, msg.offset);
        return;
      case 'hello':
        return; // handled above
    }
  }

  /**
   * The agent says who it is. A protocol this server cannot serve a tenant
   * host with, or a failed preflight, puts the host in `error` and closes the
   * socket; otherwise the host is online, the agent gets its secrets, and
   * every process resumes where it was.
   */
  private async hello(ws: WebSocket, raw: unknown): Promise<void> {
    const ref = await this.bind();
    if (!ref) return;
    const version = (raw as { protocol?: { major?: unknown; minor?: unknown } }).protocol;
    if (version?.major !== PROTOCOL.major || typeof version.minor !== 'number' || version.minor < 5) {
      const said = `${String(version?.major)}.${String(version?.minor)}`;
      const reason = `the agent speaks protocol ${said}; a tenant host needs ${PROTOCOL.major}.5 or newer (update hangar-agent)`;
      await this.status.set(ref.id, 'error', reason);
      ws.close(HOST_CLOSE.UNSUPPORTED_PROTOCOL, reason.slice(0, 120));
      return;
    }
    const parsed = HostModeHello.safeParse(raw);
    if (!parsed.success) {
      await this.status.set(ref.id, 'error', 'the agent sent a malformed hello');
      ws.close(HOST_CLOSE.MALFORMED, 'malformed hello');
      return;
    }
    const hello = parsed.data;
    if (hello.fault) {
      await this.status.set(ref.id, 'error', hello.fault, helloColumns(hello));
      ws.close(HOST_CLOSE.PREFLIGHT_FAILED, `preflight failed: ${hello.fault}`.slice(0, 120));
      return;
    }
    await this.ctx.storage.put('agent', { shell: hello.user.shell, terminal: hello.terminal } satisfies AgentFacts);
    this.lastSeenWritten = Date.now();
    await this.status.set(ref.id, 'online', null, helloColumns(hello));
    await this.ctx.storage.delete('agent_gone_at');
    this.link.markAttached(ws, hello.agent_version, hello.protocol);
    const welcome: HostServerMessage = {
      type: 'welcome',
      host_id: ref.id,
      protocol: PROTOCOL,
      heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
      metrics_interval_ms: HEARTBEAT_INTERVAL_MS,
      computers: [],
    };
    ws.send(JSON.stringify(welcome));
    await this.ready();
    this.notify({ type: 'secrets.set', env: this.secrets.current() });
    this.endStrays(hello.procs);
    // Not awaited: resuming waits on results that arrive as later messages.
    this.ctx.waitUntil(this.streams.agentResumed().then(() => this.jobs.agentResumed()));
    await this.models.agentResumed(ref.id);
    await this.schedule();
  }

  /** Processes the agent still has that this object does not run (ended, lost or never known here) are killed. */
  private endStrays(procIds: string[]): void {
    for (const procId of procIds) {
      if (this.streams.procs.row(procId)?.status === 'running') continue;
      void this.link.request('proc.signal', { proc_id: procId, signal: 'KILL' }, 10_000).then(() => this.link.request('proc.forget', { proc_id: procId }, 10_000));
    }
  }

  private notify(msg: HostModeNotice): void {
    try {
      this.link.socket()?.send(JSON.stringify(msg));
    } catch {
      /* the agent gets everything again in its next welcome */
    }
  }

  async onAgentGone(ws: WebSocket): Promise<void> {
    this.link.onClose(ws);
    this.relay.linkGone(ws);
    const ref = await this.bind();
    if (!ref || this.link.socket()) return;
    if ((await this.status.current()) === 'online') await this.status.set(ref.id, 'offline', null);
    await this.models.agentGone(ref.id);
    if (!(await this.ctx.storage.get('agent_gone_at'))) await this.ctx.storage.put('agent_gone_at', Date.now());
    await this.schedule();
  }

  // ------------------------------------------------------------ upkeep

  private graceMs(): number {
    return hostLostGraceMs(this.env);
  }

  /** When the alarm is next needed: the silence watchdog, the lost-host grace, log and terminal expiries. */
  async nextAlarm(): Promise<number | null> {
    const times: (number | null)[] = [...this.streams.expiries()];
    if (this.link.socket()) times.push(((await this.ctx.storage.get<number>('last_message_at')) ?? Date.now()) + SILENCE_LIMIT_MS);
    const goneAt = await this.ctx.storage.get<number>('agent_gone_at');
    if (goneAt && this.streams.busy()) times.push(goneAt + this.graceMs());
    const due = times.filter((t): t is number => t !== null);
    return due.length ? Math.min(...due) : null;
  }

  async alarm(): Promise<void> {
    const now = Date.now();
    const last = Math.max(this.lastMessageAt, (await this.ctx.storage.get<number>('last_message_at')) ?? 0);
    if (this.link.socket() && now - last > SILENCE_LIMIT_MS) {
      this.link.closeAll(HOST_CLOSE.SILENT, 'no heartbeat');
      for (const ws of this.ctx.getWebSockets('agent')) await this.onAgentGone(ws);
    }
    const goneAt = await this.ctx.storage.get<number>('agent_gone_at');
    if (goneAt && !this.link.socket() && now - goneAt >= this.graceMs()) {
      await this.ready();
      this.streams.procs.loseAll(`the host was away longer than ${this.graceMs() / 1000} s; its processes are lost to the API`, 'host_lost');
    }
    await this.streams.sweep();
  }

  // ------------------------------------------------------------ RPC from routes

  private async usable(ref: HostRef): Promise<Result<HostRef>> {
    await this.bind(ref);
    const status = await this.status.current();
    if (status === 'revoked') return fail('HOST_NOT_CONNECTED', 'the host is revoked');
    if (!this.link.socket()) return fail('HOST_NOT_CONNECTED', OFFLINE);
    return ok(ref);
  }

  /** Starts a job; with `waitMs`, answers when it has ended (or that much later). */
  async runJob(ref: HostRef, spec: JobSpec, waitMs: number): Promise<Result<JobRow>> {
    const u = await this.usable(ref);
    if (!u.ok) return u;
    await this.ready();
    const started = await this.jobs.start(ref.org_id, spec);
    await this.schedule();
    if (!started.ok || waitMs <= 0) return started;
    await this.jobs.wait(started.value.id, waitMs + this.graceMs());
    return ok(this.jobs.get(started.value.id) ?? started.value);
  }

  async cancelJob(ref: HostRef, jobId: string): Promise<Result<JobRow>> {
    await this.bind(ref);
    return this.jobs.cancel(jobId);
  }

  /** A ticket for a terminal: a new login shell on a PTY, or (session_id) one that exists. */
  async terminalTicket(
    ref: HostRef,
    opts: { session_id?: string; cols: number; rows: number },
    credentialId: string | null,
  ): Promise<Result<{ ticket: string; expires_at: number; session_id: string }>> {
    await this.bind(ref);
    let sessionId = opts.session_id;
    if (sessionId) {
      const row = this.streams.procs.row(sessionId);
      if (!row || row.kind !== 'terminal' || row.org_id !== ref.org_id) return fail('NOT_FOUND', 'terminal session not found');
    } else {
      const u = await this.usable(ref);
      if (!u.ok) return u;
      const facts = await this.ctx.storage.get<AgentFacts>('agent');
      if (!facts?.terminal) return fail('CONFLICT', 'this host cannot open terminals: its agent found no `script` command to make a PTY with');
      await this.ready();
      const made = await this.streams.createTerminal(ref.org_id, { cols: opts.cols, rows: opts.rows, shell: facts.shell ?? '/bin/sh' });
      if (!made.ok) return made;
      sessionId = made.value.session_id;
    }
    const t = await this.tickets.issue(ref.id, { session_id: sessionId, org_id: ref.org_id, credential_id: credentialId });
    return ok({ ...t, session_id: sessionId });
  }

  /** The terminal socket of a ticket (used once), closed when the API key that asked for the ticket is revoked. */
  async openTerminal(ticket: string, requestId: string): Promise<Response> {
    const grant = await this.tickets.redeem(ticket);
    if (!grant) return errorResponse(new ApiError('UNAUTHORIZED', 'unknown, used or expired terminal ticket; ask for a new one with POST …/terminal/ticket'), requestId);
    if (!(await this.held.admits(grant.credential_id))) return errorResponse(new ApiError('UNAUTHORIZED', REVOKED), requestId);
    await this.ready();
    return this.streams.terminals.attach(grant.org_id, grant.session_id, requestId, this.held.tags(grant.credential_id));
  }

  /**
   * A stream a route hands the object (job stream, events, file bytes), with
   * the API key behind it: refused once the key is revoked, and ended when
   * it is (`endCredential`).
   */
  async serveClient(op: string, request: Request, requestId: string): Promise<Response> {
    const credentialId = request.headers.get(CREDENTIAL_HEADER) || null;
    if (!(await this.held.admits(credentialId))) return errorResponse(new ApiError('UNAUTHORIZED', REVOKED), requestId);
    const viewer = () => this.held.viewer(request.signal, credentialId);
    switch (op) {
      case 'events':
        return this.events!.subscribe(request, viewer);
      case 'job-stream':
        return this.jobs.stream(request.headers.get('x-hangar-job-id') ?? '', request, requestId, viewer);
      case 'fs-download':
      case 'fs-upload':
        return this.fsTransfer(op === 'fs-download' ? 'download' : 'upload', request, credentialId, requestId);
    }
    return new Response('unknown operation', { status: 400 });
  }

  /**
   * An API key was revoked: the terminal tickets minted with it stop working,
   * and the terminals, viewers and file transfers opened with it end now.
   * Answers how many were ended.
   */
  endCredential(credentialId: string): number {
    this.tickets.dropForCredential(credentialId);
    const relayed = this.relay.resetWhere((tags) => tags.credential_id === credentialId, 'closed', 'credential revoked');
    return relayed + this.streams.endCredential(credentialId);
  }

  /** Revoked by its tenant: the agent is closed for good and what ran is lost. */
  async revoke(ref: HostRef): Promise<void> {
    await this.bind(ref);
    await this.status.revoked();
    this.link.closeAll(HOST_CLOSE.REVOKED, 'host revoked');
    this.relay.resetAll('closed', 'the host was revoked');
    await this.ready();
    this.streams.procs.loseAll('the host was revoked', 'host_revoked');
  }

  /** A secret of the host (or its tenant) changed: connected agents get the new set now. */
  async secretsChanged(ref: HostRef, change: { action: 'created' | 'updated' | 'deleted'; name: string; secret_id: string; scope: 'tenant' | 'host' }): Promise<void> {
    await this.bind(ref);
    const env = await this.secrets.reload(ref.org_id, ref.id);
    this.notify({ type: 'secrets.set', env });
    this.event('secret_changed', change);
  }

  /** A file request, on a host whose agent is connected. */
  async fs<T>(ref: HostRef, run: (files: HostFiles) => Promise<Result<T>>): Promise<Result<T>> {
    const u = await this.usable(ref);
    return u.ok ? run(this.files) : u;
  }

  /** A download or an upload (their bytes go over the relay, tagged with the key behind them). */
  private async fsTransfer(op: 'download' | 'upload', request: Request, credentialId: string | null, requestId: string): Promise<Response> {
    const u = await this.usable(this.ref!);
    if (!u.ok) return errorResponse(new ApiError(u.code, u.message), requestId);
    const path = new URL(request.url).searchParams.get('path') ?? '';
    return op === 'download' ? this.files.download(request, path, credentialId, requestId) : this.files.upload(request, path, credentialId, requestId);
  }

  async hostStatus(): Promise<HostStatus> {
    return this.status.current();
  }
}

function jobEventData(job: JobRow): Record<string, unknown> {
  return { job_id: job.id, status: job.status, command: job.command, exit_code: job.exit_code, reason: job.reason };
}
