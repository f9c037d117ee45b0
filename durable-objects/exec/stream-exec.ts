/**
 * The sink of a streamed command (spec/04-exec-stream.txt): stdout and stderr
 * lines as numbered `output` events, then one terminal event — `exit`,
 * `timeout` or `error` — after which every viewer's stream closes.
 */
import type { OutputStream, ProcExit } from '../../schema/protocol.ts';
import { SseHub } from '../sse-hub.ts';
import { EventLog, type SseEvent } from './event-log.ts';
import { LineSplitter, type SplitterState } from './line-splitter.ts';
import type { ProcOutcome, ProcSink } from './proc-manager.ts';
import type { ProcRow } from './proc-table.ts';

type LineStream = 'stdout' | 'stderr';

interface StreamExecState {
  timeout_s: number;
  started_at: number;
  splitters?: Record<LineStream, SplitterState>;
}

export class StreamExecSink implements ProcSink {
  readonly log: EventLog;
  readonly hub: SseHub;
  private readonly splitters: Record<LineStream, LineSplitter>;
  private readonly state: StreamExecState;

  constructor(sql: SqlStorage, row: ProcRow, private readonly onDispose: (procId: string) => void) {
    this.state = row.sink_state as unknown as StreamExecState;
    this.log = new EventLog(sql, row.proc_id, row.status === 'ended');
    this.hub = new SseHub(this.log);
    this.splitters = {
      stdout: new LineSplitter(this.state.splitters?.stdout),
      stderr: new LineSplitter(this.state.splitters?.stderr),
    };
  }

  output(stream: OutputStream, bytes: Uint8Array): void {
    if (stream === 'pty') return;
    const lines = this.splitters[stream].push(bytes);
    if (lines.length) this.emit(lines.map((line) => ({ event: 'output', data: { line, stream } })));
  }

  end(outcome: ProcOutcome): void {
    const rest: SseEvent[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      for (const line of this.splitters[stream].flush()) rest.push({ event: 'output', data: { line, stream } });
    }
    rest.push(terminalEvent(outcome, this.state));
    this.emit(rest, true);
  }

  commit(row: ProcRow): void {
    this.log.flush();
    row.sink_state = { ...this.state, splitters: { stdout: this.splitters.stdout.state(), stderr: this.splitters.stderr.state() } };
  }

  dispose(): void {
    this.hub.closeAll();
    this.log.drop();
    this.onDispose(this.log.procId);
  }

  private emit(events: SseEvent[], terminal = false): void {
    const { text, last } = this.log.append(events, terminal);
    this.hub.publish(text, last);
  }
}

function terminalEvent(outcome: ProcOutcome, state: StreamExecState): SseEvent {
  if (outcome.kind === 'error') return { event: 'error', data: { message: outcome.message } };
  const exit: ProcExit = outcome.exit;
  if (exit.timed_out) return { event: 'timeout', data: { timeout_seconds: state.timeout_s } };
  return { event: 'exit', data: { exit_code: exit.exit_code, duration_ms: Math.round(exit.duration_ms) } };
}
