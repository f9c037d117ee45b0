/**
 * The sink of a streamed command (spec/04-exec-stream.txt): stdout and stderr
 * lines as numbered `output` events, then one terminal event — `exit`,
 * `timeout` or `error` — after which every viewer's stream closes.
 *
 * Viewers are never outrun (viewer-hold.ts): while a connected viewer is too
 * far behind, the sink holds back acknowledgements and the command waits. Until
 * the first viewer arrives (at most the ticket's life) the log is held from its
 * first byte the same way.
 */
import type { OutputStream, ProcExit } from '../../schema/protocol.ts';
import { SseHub } from '../sse-hub.ts';
import { EventLog, MAX_LOG_BYTES } from './event-log.ts';
import { outputItems, outputText, sseText, type LogItem, type SseEvent } from './sse-events.ts';
import { LineSplitter, type SplitterState } from './line-splitter.ts';
import type { ProcOutcome, ProcSink } from './proc-manager.ts';
import type { ProcRow } from './proc-table.ts';
import { TICKET_TTL_S } from './tickets.ts';
import { VIEWER_LIMITS, ViewerHold } from './viewer-hold.ts';

export { HOLD_CHARS, STALL_MS } from './viewer-hold.ts';
/** Before the first viewer, the log may fill this far: leaving room for a window in flight, it never drops. */
export const HOLD_FIRST_CHARS = (MAX_LOG_BYTES / 4) * 3;

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
  private readonly hold: ViewerHold;

  constructor(
    sql: SqlStorage,
    row: ProcRow,
    private readonly onDispose: (procId: string) => void,
    /** Held acknowledgements may go out now. */
    release: (procId: string) => void,
  ) {
    this.state = row.sink_state as unknown as StreamExecState;
    this.log = new EventLog(sql, row.proc_id, row.status === 'ended');
    this.hub = new SseHub(this.log, () => this.hold.moved());
    this.hold = new ViewerHold(this.hub, () => this.behind(), () => release(this.log.procId));
    this.splitters = {
      stdout: new LineSplitter(this.state.splitters?.stdout),
      stderr: new LineSplitter(this.state.splitters?.stderr),
    };
  }

  output(stream: OutputStream, bytes: Uint8Array): void {
    if (stream === 'pty') return;
    const lines = this.splitters[stream].push(bytes);
    if (lines.length) this.record(outputItems(lines, stream), false, (first) => outputText(lines, stream, first));
  }

  end(outcome: ProcOutcome): void {
    const rest: LogItem[] = [];
    for (const stream of ['stdout', 'stderr'] as const) rest.push(...outputItems(this.splitters[stream].flush(), stream));
    rest.push(terminalEvent(outcome, this.state));
    this.record(rest, true);
  }

  commit(row: ProcRow): void {
    this.log.flush();
    row.sink_state = { ...this.state, splitters: { stdout: this.splitters.stdout.state(), stderr: this.splitters.stderr.state() } };
  }

  holds(): boolean {
    return this.hold.holds();
  }

  close(): void {
    this.hold.stop();
    this.hub.closeAll();
  }

  dispose(): void {
    this.hold.stop();
    this.hub.closeAll();
    this.log.drop();
    this.onDispose(this.log.procId);
  }

  /** The slowest viewer (or, until the first one comes, the start of the log) is too far behind. */
  private behind(): boolean {
    const waitingForFirst = !this.hub.everSubscribed && Date.now() < this.state.started_at + TICKET_TTL_S * 1000;
    if (waitingForFirst) return this.log.charsAfter(0) > HOLD_FIRST_CHARS;
    return this.hub.anyBehind(VIEWER_LIMITS);
  }

  /** Logs items and publishes them; with nobody watching, no SSE text is made at all. */
  private record(items: LogItem[], terminal: boolean, text = (first: number) => sseText(items, first)): void {
    const first = this.log.append(items, terminal);
    if (this.hub.size) this.hub.publish(text(first), this.log.lastSeq());
  }
}

function terminalEvent(outcome: ProcOutcome, state: StreamExecState): SseEvent {
  if (outcome.kind === 'error') return { event: 'error', data: { message: outcome.message } };
  const exit: ProcExit = outcome.exit;
  if (exit.timed_out) return { event: 'timeout', data: { timeout_seconds: state.timeout_s } };
  return { event: 'exit', data: { exit_code: exit.exit_code, duration_ms: Math.round(exit.duration_ms) } };
}
