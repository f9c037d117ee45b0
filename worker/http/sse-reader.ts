/**
 * Reads Server-Sent Events from a body as they arrive (the Worker following
 * a Durable Object's stream): `id`, `event` and `data` of each message;
 * comments (heartbeats) and `retry` are skipped.
 */
export interface SseMessage {
  id: string | null;
  event: string;
  data: string;
}

/** A message larger than this is not one of ours: the stream is refused rather than buffered without end. */
const MAX_MESSAGE_CHARS = 4 * 1024 * 1024;

export async function* sseMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<SseMessage> {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buf += value;
      let end: number;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const msg = parseBlock(block);
        if (msg) yield msg;
      }
      if (buf.length > MAX_MESSAGE_CHARS) throw new Error('an event stream message too large to be one of ours');
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

function parseBlock(block: string): SseMessage | null {
  let id: string | null = null;
  let event = 'message';
  const data: string[] = [];
  for (const line of block.split('\n')) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  return data.length ? { id, event, data: data.join('\n') } : null;
}
