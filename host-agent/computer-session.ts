/**
 * The agent's side of one computer: a socket to its ComputerObject that says
 * what the host has (`attached`), answers requests (validated, each with one
 * `result`), reports metrics, and tells of a computer that died on its own.
 * Lifecycle requests run one at a time; execs run side by side.
 */
import {
  ComputerNotice,
  ComputerRequest,
  FRAME_DISK,
  FRAME_STDIN,
  PROTOCOL,
  agentComputerPath,
  decodeDiskFrame,
  decodeFrame,
  frameKind,
  type ComputerAgentMessage,
} from '../schema/protocol.ts';
import type { ComputerDriver } from './drivers/driver.ts';
import { answer, refuse } from './answer.ts';
import { ReconnectingSocket } from './reconnecting-socket.ts';
import { handleLifecycle, type LifecycleRequest } from './handlers/lifecycle.ts';
import { handleExecRun } from './handlers/exec.ts';
import { ProcRelay } from './handlers/procs.ts';
import { DiskMover } from './handlers/disk.ts';
import { WatchRelay } from './handlers/watch.ts';
import { LogShipper } from './handlers/logs.ts';
import { AgentRelay } from './relay/agent-relay.ts';
import { AGENT_VERSION } from './version.ts';
import type { Logger } from './log.ts';
import { restoreSnapshot, takeSnapshot } from './handlers/snapshots.ts';
import { background } from './background.ts';

export interface SessionConfig {
  wsBase: string;
  hostKey: string;
}

export class ComputerSession {
  readonly id: string;
  private readonly driver: ComputerDriver;
  private readonly log: Logger;
  private readonly socket: ReconnectingSocket;
  private lifecycleQueue: Promise<unknown> = Promise.resolve();
  private readonly procs: ProcRelay;
  private readonly disk: DiskMover;
  private readonly watches: WatchRelay;
  private readonly systemLog: LogShipper;
  /** Connections to the computer's ports, relayed for its object. */
  private readonly relay: AgentRelay;

  constructor(id: string, cfg: SessionConfig, driver: ComputerDriver, log: Logger, onGone: (id: string) => void) {
    this.id = id;
    this.driver = driver;
    this.log = log;
    this.socket = new ReconnectingSocket({ url: cfg.wsBase + agentComputerPath(id), headers: { authorization: `Bearer ${cfg.hostKey}` } });
    this.socket.on('open', () => background(log, `computer ${id}: attaching`, this.announce()));
    this.socket.on('close', () => {
      this.procs.connectionLost();
      this.disk.connectionLost();
      this.systemLog.connectionLost();
      this.relay.connectionLost();
    });
    this.socket.on('message', (data) => background(log, `computer ${id}: a message`, this.onMessage(data)));
    this.socket.on('binary', (data) => {
      if (this.relay.onBinary(data)) return;
      const disk = frameKind(data) === FRAME_DISK ? decodeDiskFrame(data) : null;
      const frame = disk ? null : decodeFrame(data);
      if (disk) this.disk.frame(disk);
      else if (frame?.kind === FRAME_STDIN) this.procs.stdin(frame);
      else log(`computer ${id}: dropped a malformed binary frame`);
    });
    const outlet = { sendJson: (m: ComputerAgentMessage) => this.send(m), sendBinary: (b: Uint8Array) => this.socket.sendBinary(b) };
    this.procs = new ProcRelay(driver, id, outlet, log);
    this.disk = new DiskMover(driver, id, outlet, log);
    this.watches = new WatchRelay(driver, id, (m) => this.send(m));
    this.systemLog = new LogShipper(() => driver.systemLog?.(id) ?? null, (m) => this.send(m));
    this.relay = new AgentRelay(
      { sendJson: (m) => this.socket.send(m), sendBinary: (b) => this.socket.sendBinary(b) },
      {
        computer_tcp: (t) => driver.connectTcp(id, t.port),
        ...(driver.openFile && { computer_file: (t) => driver.openFile!(id, t.file) }),
      },
      log,
    );
    this.socket.on('rejected', (status) => {
      log(`computer ${id}: server answered ${status}; it is no longer served by this host`);
      onGone(id);
    });
  }

  start(): void {
    this.socket.start();
  }

  stop(): void {
    this.socket.stop();
    this.systemLog.stop();
  }

  /** Drops the socket as a network failure would; it reconnects by itself. */
  dropConnection(): void {
    this.socket.terminate();
  }

  send(msg: ComputerAgentMessage): boolean {
    return this.socket.send(msg);
  }

  private async announce(): Promise<void> {
    const state = await this.driver.state(this.id);
    this.send({ type: 'attached', computer_id: this.id, protocol: PROTOCOL, agent_version: AGENT_VERSION, state });
  }

  private async onMessage(data: string): Promise<void> {
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      this.log(`computer ${this.id}: dropped a message that is not JSON`);
      return;
    }
    if (this.relay.onJson(raw)) return;
    const type = (raw as { type?: unknown })?.type;
    if (type === 'proc.ack' || type === 'disk.ack' || type === 'disk.cancel' || type === 'procs.forget' || type === 'log.follow' || type === 'log.ack') {
      const notice = ComputerNotice.safeParse(raw);
      if (!notice.success) this.log(`computer ${this.id}: dropped a malformed ${String(type)}`);
      else if (notice.data.type === 'procs.forget') for (const id of notice.data.proc_ids) background(this.log, `computer ${this.id}: forgetting ${id}`, this.procs.forget(id));
      else if (notice.data.type === 'proc.ack') this.procs.ack(notice.data.proc_id, notice.data.offsets);
      else if (notice.data.type === 'disk.ack') this.disk.ack(notice.data.transfer_id, notice.data.offset);
      else if (notice.data.type === 'log.follow') this.systemLog.follow(notice.data.offset);
      else if (notice.data.type === 'log.ack') this.systemLog.ack(notice.data.offset);
      else this.disk.cancel(notice.data.transfer_id);
      return;
    }
    const parsed = ComputerRequest.safeParse(raw);
    if (!parsed.success) return refuse((m) => this.send(m), raw, parsed.error.issues[0]?.message);
    const req = parsed.data;
    await answer((m) => this.send(m), req.id, () => this.dispatch(req), (message) => this.log(`computer ${this.id}: ${req.type} failed: ${message}`));
  }

  private dispatch(req: ComputerRequest): Promise<unknown> {
    switch (req.type) {
      case 'exec.run':
        return handleExecRun(this.driver, this.id, req.params);
      case 'proc.start':
        return this.procs.start(req.params);
      case 'proc.attach':
        return this.procs.attach(req.proc_id, req.offsets);
      case 'proc.resize':
        return this.procs.resize(req.proc_id, req.rows, req.cols);
      case 'proc.signal':
        return this.procs.signal(req.proc_id, req.signal);
      case 'proc.close_stdin':
        return this.procs.closeStdin(req.proc_id);
      case 'proc.forget':
        return this.procs.forget(req.proc_id);
      case 'fs':
        return this.driver.fs(this.id, req.request);
      case 'watch.start':
        return this.watches.start(req.watch_id, req.producers);
      case 'watch.stop':
        return this.watches.stop(req.watch_id);
      case 'computer.export':
        return this.serial(() => this.disk.export(req.transfer_id));
      case 'computer.import':
        return this.serial(() => this.disk.importBegin(req.transfer_id, req.spec));
      case 'computer.import_done':
        return this.serial(() => this.disk.importDone(req.transfer_id, req));
      case 'computer.snapshot':
        return this.serial(() => takeSnapshot(this.driver, this.id, req.snapshot_id));
      case 'computer.snapshot_restore':
        return this.serial(() => restoreSnapshot(this.driver, this.id, req.snapshot_id));
      default:
        if (req.type === 'computer.stop' || req.type === 'computer.destroy') {
          this.procs.clear();
          this.watches.clear();
        }
        // A destroy on a move's target drops what it received first.
        return this.serial(async () => {
          if (req.type === 'computer.destroy') await this.disk.abortImport();
          return this.lifecycle(req);
        });
    }
  }

  private lifecycle(req: LifecycleRequest) {
    this.log(`computer ${this.id}: ${req.type}`);
    // The computer's own system log says what its host did with it, for its owner to read.
    const note = (line: string) => this.driver.logLine?.(this.id, line);
    const what = req.type.slice('computer.'.length);
    if (what !== 'env') note(`${what}`);
    const done = handleLifecycle(this.driver, this.id, req, (p) => {
      this.log(`computer ${this.id}: [${p.phase}] ${p.message}`);
      note(`${what}: [${p.phase}] ${p.message}`);
    });
    return done.then(
      (r) => {
        if (what !== 'env' && what !== 'destroy') note(`${what}: done; the computer is ${r.state}`);
        return r;
      },
      (err: unknown) => {
        note(`${what} failed: ${err instanceof Error ? err.message : String(err)}`);
        throw err;
      },
    );
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lifecycleQueue.then(fn, fn);
    this.lifecycleQueue = next.catch(() => {});
    return next;
  }
}
