/**
 * The computer's system log (its console on this host: boot, init, guest
 * agent, and what the driver noted — provisioning, exits, out-of-memory
 * kills), shipped to the ComputerObject, which keeps it for the logs routes.
 * The object says where to start (`log.follow`, after each attach) and
 * acknowledges what it stored (`log.ack`); at most LOG_WINDOW_BYTES are in
 * flight, in whole lines. The file is polled: cheap, and it works for files
 * written by processes in other namespaces.
 */
import fs from 'node:fs';
import { LOG_CHUNK_BYTES, LOG_WINDOW_BYTES, type ComputerAgentMessage } from '../../schema/protocol.ts';

const POLL_MS = 250;

export class LogShipper {
  /** Next byte to send; acknowledged up to `acked`. */
  private sent = 0;
  private acked = 0;
  private following = false;
  private restart = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly file: () => string | null;
  private readonly send: (m: ComputerAgentMessage) => boolean;

  constructor(file: () => string | null, send: (m: ComputerAgentMessage) => boolean) {
    this.file = file;
    this.send = send;
  }

  /** The object has the log up to `offset`: ship from there. A log shorter than that is another one (a moved computer, a cut log): it is sent from its start. */
  follow(offset: number): void {
    this.following = true;
    this.sent = this.acked = offset;
    this.restart = false;
    const size = this.size();
    if (size !== null && size < offset) {
      this.sent = this.acked = 0;
      this.restart = true;
    }
    this.timer ??= setInterval(() => this.pump(), POLL_MS);
    this.timer.unref();
    this.pump();
  }

  ack(offset: number): void {
    if (offset > this.acked && offset <= this.sent) this.acked = offset;
    this.pump();
  }

  /** The server connection dropped: nothing is sent until the object says where to resume. */
  connectionLost(): void {
    this.following = false;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.following = false;
  }

  private size(): number | null {
    const file = this.file();
    if (!file) return null;
    try {
      return fs.statSync(file).size;
    } catch {
      return null;
    }
  }

  private pump(): void {
    if (!this.following) return;
    const file = this.file();
    const size = this.size();
    if (!file || size === null) return;
    if (size < this.sent) {
      // The log was cut or replaced under us: start it over.
      this.sent = this.acked = 0;
      this.restart = true;
    }
    while (this.sent < size && this.sent - this.acked < LOG_WINDOW_BYTES) {
      const chunk = readChunk(file, this.sent, Math.min(LOG_CHUNK_BYTES, size - this.sent));
      if (chunk.byteLength === 0) return;
      const text = new TextDecoder('utf-8', { fatal: false }).decode(chunk);
      const ok = this.send({ type: 'log.lines', offset: this.sent, bytes: chunk.byteLength, text, ...(this.restart && { restart: true }) });
      if (!ok) return;
      this.restart = false;
      this.sent += chunk.byteLength;
    }
  }
}

/** Up to `max` bytes from `at`, ending after the last newline (a longer line is cut at `max`). */
function readChunk(file: string, at: number, max: number): Uint8Array {
  const buf = Buffer.alloc(max);
  let n = 0;
  const fd = fs.openSync(file, 'r');
  try {
    n = fs.readSync(fd, buf, 0, max, at);
  } finally {
    fs.closeSync(fd);
  }
  const end = buf.lastIndexOf(0x0a, n - 1);
  if (end >= 0) return buf.subarray(0, end + 1);
  // No newline yet: a partial line waits, unless it fills a whole chunk.
  return n === max ? buf.subarray(0, n) : buf.subarray(0, 0);
}
