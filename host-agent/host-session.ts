/**
 * The agent's control link: the host socket to its HostObject. It says hello
 * (version, drivers, capacity, the computers on disk), learns which computers
 * it serves from the welcome, keeps one ComputerSession per computer, removes
 * computers the server no longer knows, heartbeats, and reports metrics.
 */
import os from 'node:os';
import { AGENT_HOST_PATH, HostServerMessage, PROTOCOL } from '../schema/protocol.ts';
import type { ComputerDriver } from './drivers/driver.ts';
import { ReconnectingSocket } from './reconnecting-socket.ts';
import { ComputerSession, type SessionConfig } from './computer-session.ts';
import { AgentRelay, type TargetOpeners } from './relay/agent-relay.ts';
import { AGENT_VERSION } from './version.ts';
import { deleteSnapshot, removeStraySnapshots } from './handlers/snapshots.ts';
import type { Logger } from './log.ts';
import { background } from './background.ts';

export class HostSession {
  private readonly cfg: SessionConfig;
  private readonly driver: ComputerDriver;
  private readonly log: Logger;
  private readonly socket: ReconnectingSocket;
  private readonly sessions = new Map<string, ComputerSession>();
  private heartbeat: NodeJS.Timeout | null = null;
  private metrics: NodeJS.Timeout | null = null;
  /** Resolves once the first welcome has arrived (for scripts that wait for readiness). */
  readonly ready: Promise<void>;
  private markReady: () => void = () => {};
  /** Relayed connections on the host socket; a fleet host serves no targets there (tenant hosts serve host_tcp). */
  private readonly relay: AgentRelay;

  constructor(cfg: SessionConfig, driver: ComputerDriver, log: Logger, openers: TargetOpeners = {}) {
    this.cfg = cfg;
    this.driver = driver;
    this.log = log;
    this.ready = new Promise((r) => (this.markReady = r));
    this.socket = new ReconnectingSocket({ url: cfg.wsBase + AGENT_HOST_PATH, headers: { authorization: `Bearer ${cfg.hostKey}` } });
    this.socket.on('open', () => background(log, 'hello', this.hello()));
    this.relay = new AgentRelay({ sendJson: (m) => this.socket.send(m), sendBinary: (b) => this.socket.sendBinary(b) }, openers, log);
    this.socket.on('message', (d) => background(log, 'a host message', this.onMessage(d)));
    this.socket.on('binary', (b) => {
      if (!this.relay.onBinary(b)) log('host socket: dropped a binary message');
    });
    this.socket.on('close', (code, reason) => {
      this.relay.connectionLost();
      log(`host socket closed (${code} ${reason}); reconnecting`);
    });
    this.socket.on('rejected', (status) => {
      log(`the server refused this host key (HTTP ${status}): check --key, or register the host again`);
      process.exitCode = 1;
      background(log, 'stopping', this.stop());
    });
    driver.onExit((id, reason) => {
      log(`computer ${id} exited: ${reason}`);
      this.sessions.get(id)?.send({ type: 'computer.exited', reason });
    });
  }

  start(): void {
    this.socket.start();
  }

  async stop(): Promise<void> {
    this.socket.stop();
    for (const s of this.sessions.values()) s.stop();
    this.sessions.clear();
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.metrics) clearInterval(this.metrics);
    await this.driver.close();
  }

  /** Drops every socket as a network failure would (tests use this); all of them reconnect. */
  dropConnections(): void {
    this.socket.terminate();
    for (const s of this.sessions.values()) s.dropConnection();
  }

  private async hello(): Promise<void> {
    const ids = await this.driver.list();
    const computers = await Promise.all(ids.map(async (id) => ({ id, state: await this.driver.state(id) })));
    const described = this.driver.describe ? await this.driver.describe() : { drivers: [this.driver.name] };
    this.socket.send({
      type: 'hello',
      protocol: PROTOCOL,
      agent_version: AGENT_VERSION,
      ...described,
      hostname: os.hostname(),
      cpus: os.cpus().length,
      memory_mb: Math.round(os.totalmem() / 1024 / 1024),
      computers,
    });
  }

  private async onMessage(data: string): Promise<void> {
    let msg: HostServerMessage;
    try {
      const raw: unknown = JSON.parse(data);
      if (this.relay.onJson(raw)) return;
      msg = HostServerMessage.parse(raw);
    } catch {
      this.log('host socket: dropped a malformed message');
      return;
    }
    switch (msg.type) {
      case 'welcome': {
        this.log(`connected as host ${msg.host_id} (protocol ${msg.protocol.major}.${msg.protocol.minor}); serving ${msg.computers.length} computer(s)`);
        const served = new Set(msg.computers);
        for (const id of msg.computers) this.attach(id);
        for (const id of await this.driver.list()) if (!served.has(id)) await this.removeOrphan(id);
        if (msg.snapshots) await removeStraySnapshots(this.driver, msg.snapshots, this.log);
        this.timers(msg.heartbeat_interval_ms, msg.metrics_interval_ms);
        this.markReady();
        return;
      }
      case 'computer.attach':
        this.attach(msg.computer_id);
        return;
      case 'computer.detach':
        this.detach(msg.computer_id);
        return;
      case 'snapshot.delete':
        await deleteSnapshot(this.driver, msg.snapshot_id, this.log);
        return;
    }
  }

  private attach(id: string): void {
    if (this.sessions.has(id)) return;
    const s = new ComputerSession(id, this.cfg, this.driver, this.log, (gone) => background(this.log, `removing ${gone}`, this.removeOrphan(gone)));
    this.sessions.set(id, s);
    s.start();
  }

  private detach(id: string): void {
    this.sessions.get(id)?.stop();
    this.sessions.delete(id);
  }

  /** A computer on disk that the server no longer has (deleted while this agent was away) is removed. */
  private async removeOrphan(id: string): Promise<void> {
    this.detach(id);
    this.log(`computer ${id} is not known to the server; removing it from this host`);
    await this.driver.destroy(id).catch((e) => this.log(`removing ${id} failed: ${(e as Error).message}`));
  }

  private timers(heartbeatMs: number, metricsMs: number): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.metrics) clearInterval(this.metrics);
    this.heartbeat = setInterval(() => {
      this.socket.send({
        type: 'heartbeat',
        load1: os.loadavg()[0],
        memory_used_mb: Math.round((os.totalmem() - os.freemem()) / 1024 / 1024),
        computers_running: this.sessions.size,
      });
    }, heartbeatMs);
    this.metrics = setInterval(() => background(this.log, 'reporting metrics', this.reportMetrics()), metricsMs);
  }

  private async reportMetrics(): Promise<void> {
    for (const [id, s] of this.sessions) {
      const m = await this.driver.metrics(id).catch(() => null);
      if (m) s.send({ type: 'metrics', ts: Date.now(), ...m });
    }
  }
}
