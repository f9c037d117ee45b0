/**
 * The agent in host mode: on a tenant's own machine (OpenComputers) it dials
 * the host socket, says what the machine is (hello), and serves the machine
 * itself — streamed processes through the same ProcRelay computers use (jobs,
 * terminals), relayed streams (AgentRelay: TCP on the loopback for tunnels,
 * files), files' metadata, and the secrets its processes get (held in
 * memory only).
 * It reconnects with jittered backoff; processes go on meanwhile and resume
 * from the server's offsets. It stops for good when the host is revoked, its
 * protocol is refused or its preflight failed (exit code EXIT_CONFIG).
 */
import os from 'node:os';
import { AGENT_HOST_PATH, FRAME_STDIN, HostModeNotice, HostRequest, Welcome, decodeFrame, type ComputerAgentMessage } from '../../schema/protocol.ts';
import { answer, refuse } from '../answer.ts';
import { background } from '../background.ts';
import { ProcRelay } from '../handlers/procs.ts';
import type { Logger } from '../log.ts';
import { ReconnectingSocket } from '../reconnecting-socket.ts';
import { AgentRelay } from '../relay/agent-relay.ts';
import { hostTcpOpener } from '../relay/openers.ts';
import { HostFs } from './host-fs.ts';
import { LocalProcs } from './local-procs.ts';
import { hostHello, preflight, type MachineFacts } from './system-info.ts';
import { EXIT_CONFIG } from '../whoami.ts';
import { ModelsHandler } from '../model-server/models-handler.ts';
import type { ServingConfig } from '../model-server/model-serving.ts';


/** Close codes of the host socket after which the agent stops (durable-objects/host/tenant-host.ts HOST_CLOSE). */
const FINAL_CLOSES: Record<number, string> = {
  4401: 'this host was revoked; its key no longer works',
  4406: 'the server does not take this agent protocol; update hangar-agent',
  4412: 'the preflight check failed',
};

export class HostModeSession {
  private readonly socket: ReconnectingSocket;
  private readonly procs: LocalProcs;
  private readonly procRelay: ProcRelay;
  /** Relayed streams on the host socket: TCP to the machine's loopback (tunnels), files. */
  private readonly streams: AgentRelay;
  private readonly fs: HostFs;
  /** Models served for inference clusters (protocol 1.9). */
  private readonly models: ModelsHandler;
  private secrets: Record<string, string> = {};
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly fault: string | null;
  /** Resolves once the first welcome has arrived. */
  readonly ready: Promise<void>;
  private markReady: () => void = () => {};
  /** Resolves with an exit status when the session has stopped for good. */
  readonly finished: Promise<number>;
  private finish: (code: number) => void = () => {};
  private readonly facts: MachineFacts;
  private readonly log: Logger;

  constructor(cfg: { wsBase: string; hostKey: string; models: ServingConfig }, facts: MachineFacts, log: Logger) {
    this.facts = facts;
    this.log = log;
    this.ready = new Promise((r) => (this.markReady = r));
    this.finished = new Promise((r) => (this.finish = r));
    this.fault = preflight(facts);
    this.procs = new LocalProcs({ home: facts.home, script: facts.script, secrets: () => this.secrets });
    this.fs = new HostFs(facts.home, facts.fsRoot);
    this.socket = new ReconnectingSocket({ url: cfg.wsBase + AGENT_HOST_PATH, headers: { authorization: `Bearer ${cfg.hostKey}` } });
    const send = (m: ComputerAgentMessage) => this.socket.send(m);
    const sendBinary = (b: Uint8Array) => this.socket.sendBinary(b);
    this.procRelay = new ProcRelay(this.procs, 'host', { sendJson: send, sendBinary }, log);
    this.streams = new AgentRelay({ sendJson: (m) => this.socket.send(m), sendBinary }, { host_tcp: hostTcpOpener, host_file: (t) => this.fs.openStream(t) }, log);
    this.models = new ModelsHandler(cfg.models, (m) => this.socket.send(m as ComputerAgentMessage), log);
    this.socket.on('open', () => this.socket.send(hostHello(facts, this.procs.ids(), this.fault)));
    this.socket.on('message', (d) => void this.onMessage(d));
    this.socket.on('binary', (d) => {
      if (this.streams.onBinary(d)) return;
      const frame = decodeFrame(d);
      if (frame?.kind === FRAME_STDIN) this.procRelay.stdin(frame);
      else log('host socket: dropped a binary frame it does not take');
    });
    this.socket.on('close', (code, reason) => {
      this.procRelay.connectionLost();
      this.streams.connectionLost();
      const final = FINAL_CLOSES[code];
      if (final) return this.stopFor(`${final}${reason ? ` (${reason})` : ''}`, EXIT_CONFIG);
      log(`host socket closed (${code} ${reason}); reconnecting, processes keep running`);
    });
    this.socket.on('rejected', (status) => this.stopFor(`the server refused this host key (HTTP ${status}): it is unknown or revoked`, EXIT_CONFIG));
  }

  start(): void {
    if (this.fault) this.log(`preflight failed: ${this.fault}; reporting it to the server`);
    this.socket.start();
  }

  /** Stops serving: the processes this agent started end with it. */
  stop(): void {
    this.socket.stop();
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.procs.endAll();
    background(this.log, 'stopping model servers', this.models.close());
  }

  /** Drops the socket as a network failure would (tests, SIGUSR2); it reconnects by itself. */
  dropConnections(): void {
    this.socket.terminate();
  }

  private stopFor(why: string, code: number): void {
    this.log(`stopping: ${why}`);
    this.stop();
    this.finish(code);
  }

  private async onMessage(data: string): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      this.log('host socket: dropped a message that is not JSON');
      return;
    }
    if (this.streams.onJson(raw)) return;
    if (ModelsHandler.handles(raw as { type?: unknown })) return this.models.onMessage(raw);
    const type = (raw as { type?: unknown } | null)?.type;
    if (type === 'welcome') {
      const w = Welcome.safeParse(raw);
      if (w.success) this.welcome(w.data.host_id, w.data.heartbeat_interval_ms);
      return;
    }
    if (type === 'proc.ack' || type === 'secrets.set' || type === 'procs.forget') {
      const n = HostModeNotice.safeParse(raw);
      if (!n.success) this.log(`host socket: dropped a malformed ${String(type)}`);
      else if (n.data.type === 'proc.ack') this.procRelay.ack(n.data.proc_id, n.data.offsets);
      else if (n.data.type === 'procs.forget') for (const id of n.data.proc_ids) background(this.log, `forgetting ${id}`, this.procRelay.forget(id));
      else this.secrets = n.data.env;
      return;
    }
    const parsed = HostRequest.safeParse(raw);
    if (!parsed.success) return refuse((m) => this.socket.send(m), raw, parsed.error.issues[0]?.message);
    const req = parsed.data;
    await answer((m) => this.socket.send(m), req.id, () => this.dispatch(req), (message) => this.log(`${req.type} failed: ${message}`));
  }

  private welcome(hostId: string, heartbeatMs: number): void {
    this.log(`connected as tenant host ${hostId}: serving this machine as ${this.facts.user.name} (home ${this.facts.home}${this.facts.fsRoot ? `, files under ${this.facts.fsRoot}` : ''})`);
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      this.socket.send({
        type: 'heartbeat',
        load1: os.loadavg()[0],
        memory_used_mb: Math.round((os.totalmem() - os.freemem()) / 1024 / 1024),
        computers_running: this.procs.running(),
      });
    }, heartbeatMs);
    this.models.connected();
    this.markReady();
  }

  private dispatch(req: HostRequest): Promise<unknown> {
    switch (req.type) {
      case 'proc.start':
        return this.procRelay.start(req.params);
      case 'proc.attach':
        return this.procRelay.attach(req.proc_id, req.offsets);
      case 'proc.resize':
        return this.procRelay.resize(req.proc_id, req.rows, req.cols);
      case 'proc.signal':
        return this.procRelay.signal(req.proc_id, req.signal);
      case 'proc.close_stdin':
        return this.procRelay.closeStdin(req.proc_id);
      case 'proc.forget':
        return this.procRelay.forget(req.proc_id);
      case 'fs.list':
        return this.fs.list(req.path);
      case 'fs.stat':
        return this.fs.stat(req.path);
      case 'fs.mkdir':
        return this.fs.mkdir(req.path);
      case 'fs.delete':
        return this.fs.delete(req.path, req.recursive);
      case 'fs.prepare':
        return this.fs.prepare(req.path, req.mode, req.filename);
    }
  }
}
