/**
 * One HostObject per host. It holds the agent's control socket: the agent
 * says hello (version, drivers, capacity, the computers on its disks), gets
 * the list of computers it serves, and is told to attach new ones. The host's
 * row in D1 follows what the socket shows (online / offline, last seen).
 */
import { DurableObject } from 'cloudflare:workers';
import type { Env } from '../worker/env.ts';
import { HostAgentMessage, PROTOCOL, type HostServerMessage } from '../schema/protocol.ts';
import { isoNow } from '../worker/http/ids.ts';
import { RelayMux } from './relay/relay-mux.ts';

const TAG = 'host';
export const HEARTBEAT_INTERVAL_MS = 15_000;
/** A host silent for this long is offline, even if its TCP connection has not noticed. */
const SILENCE_LIMIT_MS = 3 * HEARTBEAT_INTERVAL_MS;
const LAST_SEEN_WRITE_MS = 60_000;

export class HostObject extends DurableObject<Env> {
  private lastSeenWritten = 0;
  /** Connections to ports on the host (tenant hosts' tunnels), relayed over the host socket (durable-objects/relay/). */
  readonly relay = new RelayMux({ socket: () => this.openSocket() });

  /** The agent route forwards the host-key-verified upgrade here with the host's id. */
  async fetch(request: Request): Promise<Response> {
    const hostId = request.headers.get('x-hangar-host-id');
    if (!hostId) return new Response('missing host', { status: 400 });
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
    if (typeof data !== 'string') {
      this.relay.onBinary(ws, data);
      return;
    }
    const raw = safeJson(data);
    if (this.relay.onJson(ws, raw)) return;
    const parsed = HostAgentMessage.safeParse(raw);
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
    this.relay.linkGone(ws);
    await this.markOfflineIfGone();
  }

  async webSocketError(ws: WebSocket): Promise<void> {
    this.relay.linkGone(ws);
    await this.markOfflineIfGone();
  }

  /** Watchdog: a silent agent is closed and the host marked offline. */
  async alarm(): Promise<void> {
    const last = (await this.ctx.storage.get<number>('last_message_at')) ?? 0;
    if (Date.now() - last > SILENCE_LIMIT_MS) {
      for (const ws of this.ctx.getWebSockets(TAG)) ws.close(4408, 'no heartbeat');
      await this.markOfflineIfGone(true);
      return;
    }
    if (await this.connected()) await this.ctx.storage.setAlarm(last + SILENCE_LIMIT_MS + 1000);
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
