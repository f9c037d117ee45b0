/**
 * One HostObject per host. For a fleet host it holds the agent's control
 * socket: the agent says hello (version, drivers, capacity, the computers on
 * its disks), gets the list of computers it serves, and is told to attach new
 * ones. The host's row in D1 follows what the socket shows (online / offline,
 * last seen). For a tenant host (OpenComputers) the host-mode agent's socket,
 * jobs, terminals, secrets and events are host/tenant-host.ts's.
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import { HostAgentMessage, PROTOCOL, type HostServerMessage } from '../schema/protocol.ts';
import type { Result } from '../schema/errors.ts';
import type { HostStatus } from '../schema/db.ts';
import { isoNow } from '../worker/http/ids.ts';
import { TenantHost, type HostRef } from './host/tenant-host.ts';
import type { JobSpec } from './host/jobs.ts';
import type { JobRow } from './host/job-table.ts';
import type { RelayMux } from './relay/relay-mux.ts';
import type { FsEntry } from '../schema/protocol.ts';

import { HOST_OP_HEADER } from './host/client-header.ts';
import { RELAY_PATH } from './relay/relay-request.ts';
import type { TunnelRecord } from './relay/tunnel-table.ts';
import { snapshotsKeptOn } from './snapshots/snapshot-rows.ts';
import { MODEL_HTTP_OP, relayToModelServer } from './cluster/member-relay.ts';

const TAG = 'host';
export const HEARTBEAT_INTERVAL_MS = 15_000;
/** A host silent for this long is offline, even if its TCP connection has not noticed. */
const SILENCE_LIMIT_MS = 3 * HEARTBEAT_INTERVAL_MS;
const LAST_SEEN_WRITE_MS = 60_000;

export class HostObject extends DurableObject<Env> {
  private lastSeenWritten = 0;
  readonly tenant: TenantHost;

  /** Relayed connections to a tenant host (tunnels to its ports, files), on its agent's socket. */
  get relay(): RelayMux {
    return this.tenant.relay;
  }

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    this.tenant = new TenantHost(ctx, env, () => this.scheduleTenant());
  }

  /** The agent route forwards the host-key-verified upgrade here with the host's id; tenant routes their streams and sockets. */
  async fetch(request: Request): Promise<Response> {
    if (new URL(request.url).pathname === RELAY_PATH) return (await this.tenant.tunnels.fetch(request)) ?? new Response('unknown relay request', { status: 400 });
    const op = request.headers.get(HOST_OP_HEADER);
    if (op) return this.tenantFetch(op, request);
    const hostId = request.headers.get('x-hangar-host-id');
    if (!hostId) return new Response('missing host', { status: 400 });
    const orgId = request.headers.get('x-hangar-org-id');
    if (request.headers.get('x-hangar-host-kind') === 'byo' && orgId) return this.tenant.acceptAgent({ id: hostId, org_id: orgId });
    await this.ctx.storage.put('host_id', hostId);
    for (const old of this.ctx.getWebSockets(TAG)) {
      try {
        old.close(4000, 'replaced by a newer agent connection');
      } catch {
        /* already closed */
      }
    }
    const pair = new WebSocketPair();
    this.ctx.acceptWebSocket(pair[1], [TAG]);
    await this.ctx.storage.put('last_message_at', Date.now());
    await this.ctx.storage.setAlarm(Date.now() + SILENCE_LIMIT_MS);
    return new Response(null, { status: 101, webSocket: pair[0] });
  }

  /** Tells a connected agent to open a computer socket; a disconnected one learns of it in its next welcome. */
  async attach(computerId: string): Promise<boolean> {
    return this.send({ type: 'computer.attach', computer_id: computerId });
  }

  async detach(computerId: string): Promise<boolean> {
    return this.send({ type: 'computer.detach', computer_id: computerId });
  }

  /** Tells a connected agent to remove these snapshots; one that is not connected learns at its next welcome. */
  async deleteSnapshots(ids: string[]): Promise<void> {
    for (const id of ids) this.send({ type: 'snapshot.delete', snapshot_id: id });
  }

  /** True while an agent socket is open. */
  async connected(): Promise<boolean> {
    return this.ctx.getWebSockets(TAG).some((ws) => ws.readyState === WebSocket.OPEN);
  }

  private openSocket(): WebSocket | null {
    return this.ctx.getWebSockets(TAG).find((s) => s.readyState === WebSocket.OPEN) ?? null;
  }

  private send(msg: HostServerMessage): boolean {
    const ws = this.openSocket();
    if (!ws) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  async webSocketMessage(ws: WebSocket, data: string | ArrayBuffer): Promise<void> {
    if (this.tenant.link.isAgentSocket(ws)) return this.tenant.onAgentMessage(ws, data);
    if (!this.ctx.getTags(ws).includes(TAG)) return this.tenant.streams.onClientMessage(ws, data);
    if (typeof data !== 'string') return;
    const parsed = HostAgentMessage.safeParse(safeJson(data));
    if (!parsed.success) {
      ws.close(4400, 'malformed message');
      return;
    }
    const hostId = (await this.ctx.storage.get<string>('host_id'))!;
    const msg = parsed.data;
    const now = Date.now();
    await this.ctx.storage.put('last_message_at', now);
    if (msg.type === 'hello') {
      if (msg.protocol.major !== PROTOCOL.major) {
        ws.close(4406, `protocol ${msg.protocol.major}.x is not supported; this server speaks ${PROTOCOL.major}.${PROTOCOL.minor}`);
        return;
      }
      await this.env.DB.prepare(
        `UPDATE hosts SET status = 'online', agent_version = ?, drivers = ?, vm_accel = ?, cpus = ?, memory_mb = ?, last_seen_at = ?, updated_at = ? WHERE id = ? AND status != 'revoked'`,
      )
        .bind(msg.agent_version, JSON.stringify(msg.drivers), msg.vm_accel ?? null, msg.cpus, msg.memory_mb, isoNow(now), isoNow(now), hostId)
        .run();
      this.lastSeenWritten = now;
      // A computer moving here counts as served: its freshly imported disk must not be taken for an orphan.
      const { results } = await this.env.DB.prepare('SELECT id FROM computers WHERE host_id = ? OR moving_to_host_id = ?').bind(hostId, hostId).all<{ id: string }>();
      ws.send(
        JSON.stringify({
          type: 'welcome',
          host_id: hostId,
          protocol: PROTOCOL,
          heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
          metrics_interval_ms: Number(this.env.METRICS_INTERVAL_MS ?? 60_000),
          computers: results.map((r) => r.id),
          snapshots: await snapshotsKeptOn(this.env.DB, hostId),
        } satisfies HostServerMessage),
      );
      return;
    }
    if (now - this.lastSeenWritten > LAST_SEEN_WRITE_MS) {
      this.lastSeenWritten = now;
      await this.env.DB.prepare('UPDATE hosts SET last_seen_at = ? WHERE id = ?').bind(isoNow(now), hostId).run();
    }
  }

  async webSocketClose(ws: WebSocket): Promise<void> {
    await this.socketGone(ws);
  }

  async webSocketError(ws: WebSocket): Promise<void> {
    await this.socketGone(ws);
  }

  private async socketGone(ws: WebSocket): Promise<void> {
    if (this.tenant.link.isAgentSocket(ws)) await this.tenant.onAgentGone(ws);
    else if (!this.ctx.getTags(ws).includes(TAG)) await this.tenant.streams.onClientGone(ws);
    else await this.markOfflineIfGone();
  }

  /** Watchdog: a silent agent is closed and the host marked offline. */
  async alarm(): Promise<void> {
    if (await this.tenant.bind()) {
      await this.tenant.alarm();
      await this.scheduleTenant();
      return;
    }
    const last = (await this.ctx.storage.get<number>('last_message_at')) ?? 0;
    if (Date.now() - last > SILENCE_LIMIT_MS) {
      for (const ws of this.ctx.getWebSockets(TAG)) ws.close(4408, 'no heartbeat');
      await this.markOfflineIfGone(true);
      return;
    }
    if (await this.connected()) await this.ctx.storage.setAlarm(last + SILENCE_LIMIT_MS + 1000);
  }

  // ------------------------------------------------------------ tenant hosts (host/tenant-host.ts)

  private async scheduleTenant(): Promise<void> {
    const at = await this.tenant.nextAlarm();
    if (at === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(Math.max(at, Date.now() + 10));
  }

  private async tenantFetch(op: string, request: Request): Promise<Response> {
    const requestId = request.headers.get('x-request-id') ?? '';
    const ref: HostRef = { id: request.headers.get('x-hangar-host-id') ?? '', org_id: request.headers.get('x-hangar-org-id') ?? '' };
    if (op === 'terminal') return this.tenant.openTerminal(request.headers.get('x-hangar-ticket') ?? '', requestId);
    if (op === 'desktop') return this.tenant.desktop.open(request.headers.get('x-hangar-ticket') ?? '', requestId);
    if (op === MODEL_HTTP_OP) return relayToModelServer(this.relay, request);
    await this.tenant.bind(ref);
    return this.tenant.serveClient(op, request, requestId);
  }

  async runJob(ref: HostRef, spec: JobSpec, waitMs: number): Promise<Result<JobRow>> {
    return this.tenant.runJob(ref, spec, waitMs);
  }

  async job(ref: HostRef, jobId: string): Promise<JobRow | null> {
    await this.tenant.bind(ref);
    return this.tenant.jobs.get(jobId);
  }

  async jobs(ref: HostRef, limit: number, offset: number): Promise<{ jobs: JobRow[]; total: number }> {
    await this.tenant.bind(ref);
    return this.tenant.jobs.table.page(limit, offset);
  }

  async cancelJob(ref: HostRef, jobId: string): Promise<Result<JobRow>> {
    return this.tenant.cancelJob(ref, jobId);
  }

  /** The job once it has ended, or as it is after `ms` (an agent session waits on its command this way, a slice at a time). */
  async waitJob(ref: HostRef, jobId: string, ms: number): Promise<JobRow | null> {
    await this.tenant.bind(ref);
    await this.tenant.jobs.wait(jobId, ms);
    return this.tenant.jobs.get(jobId);
  }

  async terminalTicket(ref: HostRef, opts: { session_id?: string; cols: number; rows: number }, credentialId: string | null) {
    return this.tenant.terminalTicket(ref, opts, credentialId);
  }

  /** An API key of the host's organization was revoked (worker/credentials/revocation.ts): what it opened here ends. */
  async endCredential(credentialId: string): Promise<number> {
    return this.tenant.endCredential(credentialId);
  }

  /** A ticket for VNC to the host's own VNC server on `port` (checked to answer first). */
  async desktopTicket(ref: HostRef, port: number, credentialId: string | null) {
    return this.tenant.desktop.ticket(ref, port, credentialId);
  }

  async revoke(ref: HostRef): Promise<void> {
    await this.tenant.revoke(ref);
  }

  async secretsChanged(ref: HostRef, change: Parameters<TenantHost['secretsChanged']>[1]): Promise<void> {
    await this.tenant.secretsChanged(ref, change);
  }

  async fsList(ref: HostRef, path: string): Promise<Result<{ path: string; entries: FsEntry[]; truncated: boolean }>> {
    return this.tenant.fs(ref, (f) => f.list(path));
  }

  async fsStat(ref: HostRef, path: string): Promise<Result<FsEntry>> {
    return this.tenant.fs(ref, (f) => f.stat(path));
  }

  async fsMkdir(ref: HostRef, path: string): Promise<Result<{ path: string }>> {
    return this.tenant.fs(ref, (f) => f.mkdir(path));
  }

  async fsDelete(ref: HostRef, path: string, recursive: boolean): Promise<Result<{ path: string }>> {
    return this.tenant.fs(ref, (f) => f.delete(path, recursive));
  }

  /** A file's start as text (an agent session's read_file). */
  async fsReadText(ref: HostRef, path: string, maxBytes: number): Promise<Result<{ path: string; content: string; size: number; truncated: boolean }>> {
    return this.tenant.fs(ref, (f) => f.readText(path, maxBytes));
  }

  /** Writes a text file, parents made (an agent session's write_file). */
  async fsWriteText(ref: HostRef, path: string, content: string): Promise<Result<{ path: string; bytes: number }>> {
    return this.tenant.fs(ref, (f) => f.writeText(path, content));
  }

  /** The host serves `model` for an inference cluster (its agent is asked now, and again after each reconnect). */
  async serveModel(ref: HostRef, clusterId: string, model: string): Promise<void> {
    await this.tenant.bind(ref);
    await this.tenant.models.serve(ref.id, clusterId, model);
  }

  async unserveModel(ref: HostRef, clusterId: string): Promise<void> {
    await this.tenant.bind(ref);
    await this.tenant.models.unserve(clusterId);
  }

  // ------------------------------------------------------------ RPC: tunnels (relay/host-relay.ts)

  /** A tunnel changed in D1 (null: deleted); `close` also ends its open connections. */
  async tunnelChanged(ref: HostRef, tunnelId: string, rec: TunnelRecord | null, close: string | null): Promise<void> {
    await this.tenant.bind(ref);
    await this.tenant.tunnels.tunnelChanged(ref.id, tunnelId, rec, close);
  }

  async redeemTunnelTicket(tunnelId: string, jti: string, expS: number): Promise<'ok' | 'used' | 'not_found'> {
    return this.tenant.tunnels.redeemTicket(tunnelId, jti, expS);
  }

  async status(ref: HostRef): Promise<HostStatus> {
    await this.tenant.bind(ref);
    return this.tenant.hostStatus();
  }

  private async markOfflineIfGone(force = false): Promise<void> {
    if (!force && (await this.connected())) return;
    const hostId = await this.ctx.storage.get<string>('host_id');
    if (!hostId) return;
    await this.env.DB.prepare(`UPDATE hosts SET status = 'offline', updated_at = ? WHERE id = ? AND status = 'online'`)
      .bind(isoNow(), hostId)
      .run();
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
}
