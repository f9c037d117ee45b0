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
