/**
 * Streamed processes of one computer (or, in host mode, of the machine
 * itself), agent side: starts them through the driver, forwards their output to the ComputerObject as binary frames with
 * byte offsets, passes the object's acknowledgements on to the computer (so
 * at most a window of output is ever in flight), writes stdin frames and
 * answers with how much was written, and after a reconnect re-attaches each
 * process from the offsets the object holds.
 */
import type { z } from 'zod';
import {
  FRAME_OUTPUT,
  INLINE_OUTPUT_BYTES,
  type RESULT_SCHEMAS,
  type OutputStream,
  OUTPUT_WINDOW_BYTES,
  encodeFrame,
  type BinaryFrame,
  type ComputerAgentMessage,
  type ProcAttachResult,
  type ProcExit,
  type ProcSignal,
  type ProcStartParams,
  type StreamOffsets,
} from '../../schema/protocol.ts';
import { DriverError, type ComputerDriver, type StreamExit, type StreamProcess } from '../drivers/driver.ts';
import type { Logger } from '../log.ts';

const SIGNALS: Record<ProcSignal, number> = { HUP: 1, INT: 2, KILL: 9, TERM: 15 };

/**
 * Output of a process whose start waits for its end: kept for the answer
 * while it is small (one message instead of several), sent as frames, in
 * order, as soon as it is not.
 */
class HeldOutput {
  private chunks: { stream: OutputStream; offset: number; data: Buffer }[] = [];
  private bytes = 0;
  private holding = true;
  private readonly send: (frame: Uint8Array) => void;
  private readonly procId: string;

  constructor(send: (frame: Uint8Array) => void, procId: string) {
    this.send = send;
    this.procId = procId;
  }

  /** Keeps a chunk; false when it must go as a frame now (everything held before it has gone first). */
  hold(stream: OutputStream, data: Buffer, offset: number): boolean {
    if (!this.holding) return false;
    if (this.bytes + data.length > INLINE_OUTPUT_BYTES) {
      this.release();
      return false;
    }
    this.chunks.push({ stream, offset, data });
    this.bytes += data.length;
    return true;
  }

  /** Sends what is held as frames, and holds nothing more. */
  release(): void {
    this.holding = false;
    for (const c of this.chunks.splice(0)) this.send(encodeFrame({ kind: FRAME_OUTPUT, stream: c.stream, proc_id: this.procId, offset: c.offset, payload: c.data }));
  }

  /** What is held, for the answer; nothing more is held after. */
  take(): { stream: OutputStream; offset: number; data: string }[] {
    this.holding = false;
    return this.chunks.splice(0).map((c) => ({ stream: c.stream, offset: c.offset, data: c.data.toString('base64') }));
  }
}

/** What the relay needs of whatever runs processes: a computer's driver, or the machine itself (host-mode/local-procs.ts). */
export type ProcDriver = Pick<ComputerDriver, 'spawn' | 'attach'> & Partial<Pick<ComputerDriver, 'exec'>>;

/** A process's exit as the protocol carries it; duration_ms is the server's to measure (it saw the start; this agent may be a newer one). */
const exitMessage = (exit: StreamExit): ProcExit => ({
  exit_code: exit.exit_code,
  signal: exit.signal,
  timed_out: exit.timed_out,
  duration_ms: 0,
  ...(exit.truncated !== undefined && { truncated: exit.truncated }),
});

/** How the relay reaches the server: while the socket is down, sends are dropped (the server re-attaches from its offsets). */
export interface ProcOutlet {
  sendJson(msg: ComputerAgentMessage): boolean;
  sendBinary(bytes: Uint8Array): boolean;
}

export class ProcRelay {
  private readonly procs = new Map<string, StreamProcess>();
  private readonly driver: ProcDriver;
  private readonly computerId: string;
  private readonly out: ProcOutlet;
  private readonly log: Logger;

  constructor(driver: ProcDriver, computerId: string, out: ProcOutlet, log: Logger) {
    this.driver = driver;
    this.computerId = computerId;
    this.out = out;
    this.log = log;
  }

  /**
   * Starts a process and answers its pid; with `wait_exit_ms`, a process that
   * ends within that long is answered with its exit instead of a proc.exit
   * message after (one message less for a short command; its output frames
   * have gone before the answer).
   */
  async start(params: ProcStartParams): Promise<z.infer<(typeof RESULT_SCHEMAS)['proc.start']>> {
    // A terminal names its shell too (its argv is [shell, -l]): a missing one is a clear refusal, not a session that dies at once.
    if (params.shell) await this.requireShell(params.shell);
    const handle = await this.driver.spawn(this.computerId, params, OUTPUT_WINDOW_BYTES);
    if (!params.wait_exit_ms) {
      this.wire(params.proc_id, handle);
      return { pid: handle.pid };
    }
    let answered = false;
    const exited = new Promise<StreamExit | null>((resolve) => {
      const timer = setTimeout(() => resolve(null), params.wait_exit_ms);
      handle.once('exit', (exit) => {
        clearTimeout(timer);
        resolve(exit);
      });
    });
    const held = new HeldOutput((frame) => this.out.sendBinary(frame), params.proc_id);
    this.wire(params.proc_id, handle, () => answered, held);
    const exit = await exited;
    answered = exit !== null;
    if (!exit) {
      held.release();
      return { pid: handle.pid };
    }
    return { pid: handle.pid, exit: exitMessage(exit), output: held.take() };
  }

  async attach(procId: string, offsets: StreamOffsets): Promise<ProcAttachResult> {
    this.unwire(procId);
    const handle = await this.driver.attach(this.computerId, procId, offsets, OUTPUT_WINDOW_BYTES);
    if (!handle) throw new DriverError('NOT_FOUND', `process ${procId} is not in the computer`);
    // Replayed output and, for a process that already ended, its exit follow as events.
    this.wire(procId, handle);
    return { running: true, exit: null };
  }

  ack(procId: string, offsets: StreamOffsets): void {
    this.procs.get(procId)?.ack(offsets).catch(() => {});
  }

  /**
   * Stdin bytes; acknowledged with the offset written up to, which is the
   * server's credit. The server resends what it had not seen acknowledged when
   * a connection dropped; the offset lets the computer skip what it already took.
   */
  stdin(frame: BinaryFrame): void {
    const handle = this.procs.get(frame.proc_id);
    if (!handle) return;
    const end = frame.offset + frame.payload.byteLength;
    handle.write(frame.payload, frame.offset).then(
      () => this.out.sendJson({ type: 'proc.stdin_ack', proc_id: frame.proc_id, offset: end }),
      (err: Error) => this.log(`computer ${this.computerId}: stdin to ${frame.proc_id} failed: ${err.message}`),
    );
  }

  async resize(procId: string, rows: number, cols: number): Promise<Record<string, never>> {
    await this.handle(procId).resize(rows, cols);
    return {};
  }

  async signal(procId: string, signal: ProcSignal): Promise<Record<string, never>> {
    await this.handle(procId).signal(SIGNALS[signal], true);
    return {};
  }

  async closeStdin(procId: string): Promise<Record<string, never>> {
    await this.handle(procId).closeStdin();
    return {};
  }

  async forget(procId: string): Promise<Record<string, never>> {
    const handle = this.procs.get(procId);
    this.unwire(procId);
    await handle?.forget().catch(() => {});
    return {};
  }

  /**
   * The server connection dropped. Output produced now is lost on the way, so
   * nothing more is relayed until the server re-attaches each process from the
   * offsets it holds: a later frame sent on the next connection would leave a gap.
   */
  connectionLost(): void {
    for (const handle of this.procs.values()) handle.removeAllListeners();
  }

  /** The computer stopped: its processes are gone. */
  clear(): void {
    for (const id of [...this.procs.keys()]) this.unwire(id);
  }

  private handle(procId: string): StreamProcess {
    const h = this.procs.get(procId);
    if (!h) throw new DriverError('NOT_FOUND', `process ${procId} is not running here`);
    return h;
  }

  /**
   * Relays the process's output and exit; `exitAnswered` says when the start's
   * answer carried the exit already, and `held` keeps output for that answer.
   */
  private wire(procId: string, handle: StreamProcess, exitAnswered: () => boolean = () => false, held?: HeldOutput): void {
    this.procs.set(procId, handle);
    handle.on('output', (stream, data, offset) => {
      if (held?.hold(stream, data, offset)) return;
      this.out.sendBinary(encodeFrame({ kind: FRAME_OUTPUT, stream, proc_id: procId, offset, payload: data }));
    });
    handle.on('gap', (stream, from, to) => this.log(`computer ${this.computerId}: ${to - from} bytes of ${procId}/${stream} were lost before re-attaching`));
    handle.on('exit', (exit) => {
      // After the start's answer has been decided: a start waiting for the exit answers with it.
      queueMicrotask(() => {
        if (!exitAnswered()) this.out.sendJson({ type: 'proc.exit', proc_id: procId, ...exitMessage(exit) });
      });
    });
  }

  private unwire(procId: string): void {
    this.procs.get(procId)?.removeAllListeners();
    this.procs.delete(procId);
  }

  /** A shell must exist in the computer; saying so beats a process that fails to start. */
  private async requireShell(shell: string): Promise<void> {
    if (!this.driver.exec) return;
    const r = await this.driver.exec(this.computerId, { command: 'test -f "$HANGAR_SHELL" -a -x "$HANGAR_SHELL"', env: { HANGAR_SHELL: shell }, timeout_s: 5, max_output_bytes: 1024 });
    if (r.exit_code !== 0) throw new DriverError('BAD_REQUEST', `shell ${shell} does not exist in the computer`);
  }
}
