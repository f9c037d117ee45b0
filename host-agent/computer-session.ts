/**
 * The agent's side of one computer: a socket to its ComputerObject that says
 * what the host has (`attached`), answers requests (validated, each with one
 * `result`), reports metrics, and tells of a computer that died on its own.
 * Lifecycle requests run one at a time; execs run side by side.
 */
import { ComputerNotice, ComputerRequest, FRAME_STDIN, PROTOCOL, agentComputerPath, decodeFrame, type ComputerAgentMessage } from '../schema/protocol.ts';
import { DriverError, type ComputerDriver } from './drivers/driver.ts';
import { ReconnectingSocket } from './reconnecting-socket.ts';
import { handleLifecycle } from './handlers/lifecycle.ts';
import { handleExecRun } from './handlers/exec.ts';
import { ProcRelay } from './handlers/procs.ts';
import { AGENT_VERSION } from './version.ts';
import type { Logger } from './log.ts';

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

  constructor(id: string, cfg: SessionConfig, driver: ComputerDriver, log: Logger, onGone: (id: string) => void) {
    this.id = id;
    this.driver = driver;
    this.log = log;
    this.socket = new ReconnectingSocket({ url: cfg.wsBase + agentComputerPath(id), headers: { authorization: `Bearer ${cfg.hostKey}` } });
    this.socket.on('open', () => void this.announce());
    this.socket.on('close', () => this.procs.connectionLost());
    this.socket.on('message', (data) => void this.onMessage(data));
    this.socket.on('binary', (data) => {
      const frame = decodeFrame(data);
      if (frame?.kind === FRAME_STDIN) this.procs.stdin(frame);
      else log(`computer ${id}: dropped a malformed binary frame`);
    });
    this.procs = new ProcRelay(driver, id, { sendJson: (m) => this.send(m), sendBinary: (b) => this.socket.sendBinary(b) }, log);
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
    if ((raw as { type?: unknown })?.type === 'proc.ack') {
      const notice = ComputerNotice.safeParse(raw);
      if (notice.success) this.procs.ack(notice.data.proc_id, notice.data.offsets);
      else this.log(`computer ${this.id}: dropped a malformed proc.ack`);
      return;
    }
    const parsed = ComputerRequest.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { id?: unknown })?.id;
      if (typeof id === 'string') {
        this.send({ type: 'result', id, ok: false, error: { code: 'BAD_REQUEST', message: `invalid request: ${parsed.error.issues[0]?.message}` } });
      }
      return;
    }
    const req = parsed.data;
    try {
      const data = await this.dispatch(req);
      this.send({ type: 'result', id: req.id, ok: true, data });
    } catch (err) {
      const code = err instanceof DriverError ? err.code : 'FAILED';
      const message = err instanceof Error ? err.message : String(err);
      if (code === 'FAILED') this.log(`computer ${this.id}: ${req.type} failed: ${message}`);
      this.send({ type: 'result', id: req.id, ok: false, error: { code, message: message.slice(0, 4000) } });
    }
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
      default:
        if (req.type === 'computer.stop' || req.type === 'computer.destroy') this.procs.clear();
        return this.serial(() => this.lifecycle(req));
    }
  }

  private lifecycle(req: Extract<ComputerRequest, { type: `computer.${string}` }>) {
    this.log(`computer ${this.id}: ${req.type}`);
    return handleLifecycle(this.driver, this.id, req, (p) => this.log(`computer ${this.id}: [${p.phase}] ${p.message}`));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lifecycleQueue.then(fn, fn);
    this.lifecycleQueue = next.catch(() => {});
    return next;
  }
}
