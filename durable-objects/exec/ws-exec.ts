/**
 * Exec over a WebSocket, subprotocol `miosa-exec-v1`, as the MIOSA SDK's
 * `exec.stream()` speaks it. Every binary frame's first byte says what follows:
 *
 *   0x00  stdin bytes                      client -> server
 *   0x01  stdout (a pty's output too)      server -> client
 *   0x02  stderr                           server -> client
 *   0x03  exit code, u32 big-endian        server -> client, then close 1000
 *   0x04  close stdin (Hangar extension)   client -> server
 *   0x05  resize: rows, cols, u16 BE each  client -> server
 *
 * Unknown frame types are ignored, as the protocol asks. One socket drives one
 * process; when the client closes first the process is hung up (HUP, then
 * KILL after a grace), because nobody can read its output or feed it any more.
 */
import { ApiError } from '../../schema/errors.ts';
import type { OutputStream } from '../../schema/protocol.ts';
import { errorResponse } from '../../worker/http/responses.ts';
import type { AgentLink } from '../agent-link.ts';
import { CLOSE, acceptClient, closeSocket, openClients, sendBytes, type ExecSocketStart } from './client-sockets.ts';
import { hangUp } from './hang-up.ts';
import { newProcId } from './proc-id.ts';
import type { ProcManager, ProcOutcome, ProcSink } from './proc-manager.ts';
import type { ProcRow } from './proc-table.ts';
import { STDIN_QUEUE_BYTES, type StdinPumps } from './stdin-pump.ts';

export const EXEC_SUBPROTOCOL = 'miosa-exec-v1';

export const FRAME = { STDIN: 0x00, STDOUT: 0x01, STDERR: 0x02, EXIT: 0x03, STDIN_EOF: 0x04, RESIZE: 0x05 } as const;

const TERM_MIN = 1;
const TERM_MAX = 1000;

/** Where an exec socket's process output goes: the socket, and nowhere else (nothing is kept). */
export class WsExecSink implements ProcSink {
  constructor(
    private readonly ctx: DurableObjectState,
    private readonly procId: string,
    private readonly onEnd: (procId: string) => void,
  ) {}

  output(stream: OutputStream, bytes: Uint8Array): void {
    sendBytes(openClients(this.ctx, this.procId), bytes, stream === 'stderr' ? FRAME.STDERR : FRAME.STDOUT);
  }

  end(outcome: ProcOutcome): void {
    this.onEnd(this.procId);
    for (const ws of openClients(this.ctx, this.procId)) {
      if (outcome.kind === 'exit') {
        const frame = new Uint8Array(5);
        frame[0] = FRAME.EXIT;
        new DataView(frame.buffer).setUint32(1, outcome.exit.exit_code >>> 0);
        try {
          ws.send(frame);
        } catch {
          /* closing */
        }
        closeSocket(ws, CLOSE.EXITED, `exited with code ${outcome.exit.exit_code}`);
      } else {
        closeSocket(ws, CLOSE.LOST, outcome.message);
      }
    }
  }

  commit(): void {}

  dispose(): void {}
}

export class ExecSockets {
  /** Processes already hung up, so a second close does not signal again. */
  private readonly hungUp = new Set<string>();

  constructor(
    private readonly ctx: DurableObjectState,
    private readonly link: AgentLink,
    private readonly procs: ProcManager,
    private readonly stdin: StdinPumps,
  ) {}

  sink(row: ProcRow): ProcSink {
    return new WsExecSink(this.ctx, row.proc_id, (procId) => {
      this.stdin.drop(procId);
      this.hungUp.delete(procId);
    });
  }

  /** Starts the process and answers the upgrade; a process that cannot start is an error response instead. */
  async open(orgId: string, start: ExecSocketStart, subprotocol: string | null, requestId: string, tags: string[] = []): Promise<Response> {
    const procId = newProcId();
    const pair = new WebSocketPair();
    const client = pair[0];
    const server = pair[1];
    // Accepted before the start, so output that arrives right after it has a socket to go to.
    acceptClient(this.ctx, server, 'exec', procId, tags);
    const started = await this.procs.start('ws', orgId, { ...start, proc_id: procId, stdin: true });
    if (!started.ok) {
      closeSocket(server, CLOSE.LOST, started.message);
      return errorResponse(new ApiError(started.code, started.message), requestId);
    }
    const headers: Record<string, string> = subprotocol ? { 'sec-websocket-protocol': subprotocol } : {};
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  onMessage(ws: WebSocket, procId: string, data: string | ArrayBuffer): void {
    if (typeof data === 'string') {
      closeSocket(ws, CLOSE.UNSUPPORTED, `${EXEC_SUBPROTOCOL} takes binary frames only`);
      void this.hangUp(procId);
      return;
    }
    const bytes = new Uint8Array(data);
    if (bytes.byteLength === 0) return;
    switch (bytes[0]) {
      case FRAME.STDIN:
        if (!this.stdin.write(procId, bytes.subarray(1))) {
          closeSocket(ws, CLOSE.TOO_BIG, `more than ${STDIN_QUEUE_BYTES} bytes of stdin are waiting for the process to read them`);
          void this.hangUp(procId);
        }
        return;
      case FRAME.STDIN_EOF:
        this.stdin.end(procId);
        return;
      case FRAME.RESIZE: {
        if (bytes.byteLength < 5) return;
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        const rows = view.getUint16(1);
        const cols = view.getUint16(3);
        if (rows < TERM_MIN || rows > TERM_MAX || cols < TERM_MIN || cols > TERM_MAX) return;
        if (this.procs.row(procId)?.status === 'running') void this.link.request('proc.resize', { proc_id: procId, rows, cols }, 10_000);
        return;
      }
      default:
        return;
    }
  }

  /** The client went away: so does its process. */
  async onClose(ws: WebSocket, procId: string): Promise<void> {
    closeSocket(ws, CLOSE.EXITED, 'closed');
    if (openClients(this.ctx, procId, ws).length === 0) await this.hangUp(procId);
  }

  /** After an agent re-attached: processes whose socket closed while it was away are hung up now. */
  async agentResumed(): Promise<void> {
    const orphans = this.procs.table.running().filter((r) => r.kind === 'ws' && openClients(this.ctx, r.proc_id).length === 0);
    await Promise.all(orphans.map((r) => this.hangUp(r.proc_id, true)));
  }

  private async hangUp(procId: string, again = false): Promise<void> {
    if (this.hungUp.has(procId) && !again) return;
    this.hungUp.add(procId);
    this.stdin.drop(procId);
    if (!(await hangUp(this.link, this.procs, procId))) this.hungUp.delete(procId);
  }
}
