/** Reading a Server-Sent Events response as a browser's EventSource would: id, event, data per message. */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** Parses complete messages out of `buffer`; returns them and the unparsed rest. */
export function parseSse(buffer: string): { messages: SseMessage[]; rest: string } {
  const messages: SseMessage[] = [];
  let at = 0;
  for (;;) {
    const end = buffer.indexOf('\n\n', at);
    if (end === -1) break;
    const block = buffer.slice(at, end);
    at = end + 2;
    let id: string | null = null;
    let event = 'message';
    const data: string[] = [];
    let any = false;
    for (const line of block.split('\n')) {
      if (line.startsWith(':') || line === '') continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'id') id = value;
      else if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else continue;
      any = true;
    }
    if (any && (data.length || id !== null)) messages.push({ id, event, data: data.join('\n') });
  }
  return { messages, rest: buffer.slice(at) };
}

/** Reads an SSE stream until it ends (or `stopAfter` messages), collecting messages. */
export async function readSse(res: Response, stopAfter = Infinity): Promise<SseMessage[]> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const all: SseMessage[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    const { messages, rest } = parseSse(buf);
    buf = rest;
    all.push(...messages);
    if (all.length >= stopAfter) {
      await reader.cancel();
      return all.slice(0, stopAfter);
    }
  }
  return all;
}

/** A comment block (": heartbeat"), which EventSource ignores but a proxy sees as traffic. */
export interface SseComment {
  comment: string;
}

/** Reads one SSE response a message (or comment) at a time, so a test can stop anywhere and reconnect. */
export class SseReader {
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buf = '';
  private readonly queue: (SseMessage | SseComment)[] = [];
  private ended = false;

  constructor(res: Response) {
    if (!res.body) throw new Error(`no body to read (status ${res.status})`);
    this.reader = res.body.getReader();
  }

  /** The next message, or null once the server has ended the stream. Comments are skipped. */
  async next(): Promise<SseMessage | null> {
    for (;;) {
      const item = await this.nextItem();
      if (item === null || !('comment' in item)) return item;
    }
  }

  /** The next message or comment, or null at the end of the stream. */
  async nextItem(): Promise<SseMessage | SseComment | null> {
    while (this.queue.length === 0) {
      if (this.ended) return null;
      const { done, value } = await this.reader.read();
      if (done) {
        this.ended = true;
        continue;
      }
      this.buf += this.decoder.decode(value, { stream: true });
      this.takeBlocks();
    }
    return this.queue.shift()!;
  }

  /** Goes away mid-stream, as a closed tab would. */
  async close(): Promise<void> {
    if (!this.ended) await this.reader.cancel().catch(() => {});
    this.ended = true;
  }

  private takeBlocks(): void {
    let at = 0;
    for (;;) {
      const end = this.buf.indexOf('\n\n', at);
      if (end === -1) break;
      const block = this.buf.slice(at, end);
      at = end + 2;
      const lines = block.split('\n');
      if (lines.every((l) => l.startsWith(':'))) this.queue.push({ comment: lines.map((l) => l.slice(1).trim()).join('\n') });
      else this.queue.push(...parseSse(`${block}\n\n`).messages);
    }
    this.buf = this.buf.slice(at);
  }
}
