/**
 * The computer's system log as the object keeps it: the lines its host agent
 * ships (boot, init, guest agent, what the host did and saw), numbered and
 * stored in the object's SQLite (an EventLog, the store of command output),
 * so they are there while the host is away and after the computer stopped.
 * The newest MAX_CHARS are kept. Readers take the last lines, or follow the
 * log as Server-Sent Events (SseHub) with Last-Event-ID resume.
 *
 * The agent sends byte ranges of its log file; the object keeps the offset it
 * has, acknowledges what it stored, and after each attach tells the agent
 * where to continue (`log.follow`), so nothing is stored twice or skipped.
 */
import type { LogLines } from '../../schema/protocol.ts';
import type { z } from 'zod';
import { EventLog } from '../exec/event-log.ts';
import type { SseEvent } from '../exec/sse-events.ts';
import { SseHub } from '../sse-hub.ts';

/** Stored characters of log kept at most; older lines go first. */
export const MAX_CHARS = 4 * 1024 * 1024;
/** A line longer than this is cut (the rest follows as its own line). */
const MAX_LINE = 16 * 1024;
const LOG_ID = 'system-log';

export interface LogLine {
  id: number;
  line: string;
  timestamp: string;
}

/** Header on a log stream's request (set by the route): the API key it was opened with. */
export const CREDENTIAL_HEADER = 'x-hangar-credential';

export class SystemLog {
  private readonly log: EventLog;
  readonly hub: SseHub;
  /** Bytes of the host's log file stored so far. */
  private offset: number;
  /** A line cut off at the end of the last message, waiting for its end. */
  private carry = '';

  constructor(private readonly sql: SqlStorage) {
    EventLog.init(sql);
    sql.exec('CREATE TABLE IF NOT EXISTS system_log_state (k TEXT PRIMARY KEY, offset INTEGER NOT NULL, carry TEXT NOT NULL)');
    const row = sql.exec<{ offset: number; carry: string }>("SELECT offset, carry FROM system_log_state WHERE k = 'log'").toArray()[0];
    this.offset = row?.offset ?? 0;
    this.carry = row?.carry ?? '';
    this.log = new EventLog(sql, LOG_ID, false, { maxChars: MAX_CHARS });
    this.hub = new SseHub(this.log);
  }

  /** Where the agent should continue (sent after each attach). */
  next(): number {
    return this.offset;
  }

  /** Stores what the agent sent; returns the offset to acknowledge, or null when nothing new came. */
  take(msg: z.infer<typeof LogLines>): number | null {
    let text = msg.text;
    if (msg.restart) {
      if (this.offset > 0 || this.carry) this.append([`[the log on the host starts over here: the computer moved, or its log was cut]`]);
      this.offset = 0;
      this.carry = '';
    }
    const end = msg.offset + msg.bytes;
    if (end <= this.offset) return this.offset; // sent again after a reconnect
    if (msg.offset > this.offset) this.append([`[${msg.offset - this.offset} bytes of the log were lost on the way]`]);
    else if (msg.offset < this.offset) text = sliceBytes(text, this.offset - msg.offset);
    const parts = (this.carry + text).split('\n');
    this.carry = parts.pop() ?? '';
    // A partial line is held until its newline comes; one as long as a whole message is stored as it is.
    if (this.carry.length >= MAX_LINE) {
      parts.push(this.carry);
      this.carry = '';
    }
    this.append(parts.flatMap(cut));
    this.offset = end;
    this.sql.exec(
      "INSERT INTO system_log_state (k, offset, carry) VALUES ('log', ?, ?) ON CONFLICT (k) DO UPDATE SET offset = excluded.offset, carry = excluded.carry",
      this.offset,
      this.carry,
    );
    return this.offset;
  }

  /** The last `n` lines (after `since`, an ISO time, when given), oldest first. */
  tail(n: number, since?: string): LogLine[] {
    const from = since === undefined ? Math.max(0, this.log.lastSeq() - n) : 0;
    const { items } = this.log.itemsAfter(from, Infinity);
    const lines = items.map(({ seq, item }) => ({ id: seq, ...((item as SseEvent).data as { line: string; timestamp: string }) }));
    const kept = since === undefined ? lines : lines.filter((l) => l.timestamp >= since);
    return kept.slice(-n);
  }

  lastId(): number {
    return this.log.lastSeq();
  }

  /** A stream of the log: after Last-Event-ID when given, else the last `tail` lines, then live lines. */
  follow(lastEventId: string | null, tail: number, gone?: AbortSignal, onEnd?: () => void): Response {
    const last = this.log.lastSeq();
    const after = lastEventId !== null && /^\d+$/.test(lastEventId) ? Math.min(Number(lastEventId), last) : Math.max(0, last - tail);
    return this.hub.subscribe(after, gone, onEnd);
  }

  /** Ends every viewer's stream (the computer is deleted). */
  closeViewers(): void {
    this.hub.closeAll();
  }

  private append(lines: string[]): void {
    if (lines.length === 0) return;
    const timestamp = new Date().toISOString();
    const items: SseEvent[] = lines.map((line) => ({ event: 'log', data: { line, timestamp } }));
    const first = this.log.append(items);
    this.log.flush();
    if (this.hub.size) this.hub.publish(this.log.readAfter(first - 1, Infinity).text, this.log.lastSeq());
  }
}

/** `text` without its first `n` UTF-8 bytes. */
function sliceBytes(text: string, n: number): string {
  return new TextDecoder().decode(new TextEncoder().encode(text).subarray(n));
}

/** A line as stored: at most MAX_LINE characters a line. */
function cut(line: string): string[] {
  if (line.length <= MAX_LINE) return [line.replace(/\r$/, '')];
  const out: string[] = [];
  for (let at = 0; at < line.length; at += MAX_LINE) out.push(line.slice(at, at + MAX_LINE));
  return out;
}
