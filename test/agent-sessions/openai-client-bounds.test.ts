/**
 * A provider is outside input (a tenant may name their own): however much it
 * sends, one answer is read up to a bound and then refused, streamed or not,
 * and the stream it was sending is let go.
 */
import { describe, expect, it } from 'vitest';
import { MAX_ANSWER_BYTES, chatCompletion } from '../../durable-objects/agent-session/openai-client.ts';

/** A body that never ends: `piece` again and again, counting what was pulled from it. */
function endless(piece: string): { body: ReadableStream<Uint8Array>; pulled: () => number; cancelled: () => boolean } {
  const bytes = new TextEncoder().encode(piece);
  let pulled = 0;
  let cancelled = false;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      pulled += bytes.byteLength;
      c.enqueue(bytes);
    },
    cancel() {
      cancelled = true;
    },
  });
  return { body, pulled: () => pulled, cancelled: () => cancelled };
}

const call = (res: Response, stream: boolean) =>
  chatCompletion({ baseUrl: 'http://provider.invalid/v1', apiKey: 'sk-test', model: 'm', fetch: async () => res }, { messages: [{ role: 'user', content: 'hi' }] }, { timeoutMs: 60_000, stream, retryDelays: [] });

describe("a provider's answer is read up to a bound", () => {
  it('a stream that never ends fails the call once past the bound', async () => {
    const chunk = `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'x'.repeat(4000) } }] })}\n\n`;
    const src = endless(chunk);
    const r = await call(new Response(src.body, { headers: { 'content-type': 'text/event-stream' } }), true);
    expect(r).toEqual({ ok: false, error: `the model's answer is over ${MAX_ANSWER_BYTES} bytes` });
    expect(src.pulled()).toBeLessThan(MAX_ANSWER_BYTES + 1024 * 1024);
    expect(src.cancelled()).toBe(true);
  });

  it('a JSON answer that never ends fails the call once past the bound', async () => {
    const src = endless('{"choices":[{"message":{"content":"' + 'y'.repeat(4000));
    const r = await call(new Response(src.body, { headers: { 'content-type': 'application/json' } }), false);
    expect(r).toEqual({ ok: false, error: `the model's answer is over ${MAX_ANSWER_BYTES} bytes` });
    expect(src.pulled()).toBeLessThan(MAX_ANSWER_BYTES + 1024 * 1024);
  });

  it('an error body that never ends is read only as far as its message needs', async () => {
    const src = endless('z'.repeat(4000));
    const r = await call(new Response(src.body, { status: 400 }), false);
    expect(r.ok).toBe(false);
    expect(src.pulled()).toBeLessThan(64 * 1024);
  });
});
