/**
 * The managed model server, as the agent starts it: a real process serving
 * the tiny model through llama.cpp, driven over its OpenAI-compatible HTTP
 * routes. Output is noise; lengths, shapes, streaming, limits and the
 * server's bookkeeping of busy slots are what is checked.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManagedModelServer } from '../../host-agent/model-server/managed-server.ts';
import { probeModelServer } from '../../host-agent/model-server/health.ts';
import { ensureTinyModel, TINY_SHAPE } from '../../host-agent/models/tiny-model.ts';
import { parseSse } from '../e2e/sse.ts';

let dir: string;
let server: ManagedModelServer;
let base: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hangar-models-'));
  server = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 2, threads: 1, maxQueue: 1 });
  base = await server.start();
});

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const post = (p: string, body: unknown, signal?: AbortSignal) =>
  fetch(`${base}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });

/** Reads a streamed answer, noting when each `data:` message arrived. */
async function readStream(res: Response): Promise<Array<{ data: string; at: number }>> {
  const out: Array<{ data: string; at: number }> = [];
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return out;
    buf += decoder.decode(value, { stream: true });
    const { messages, rest } = parseSse(buf);
    buf = rest;
    const at = performance.now();
    for (const m of messages) out.push({ data: m.data, at });
  }
}

async function waitIdle(): Promise<{ busy?: number; queued?: number }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const h = await probeModelServer(base, 'hangar-tiny');
    if ((h.busy === 0 && h.queued === 0) || Date.now() > deadline) return h;
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('tiny model file', () => {
  it('is the same bytes every time it is written', async () => {
    const a = await ensureTinyModel(path.join(dir, 'a', 'tiny.gguf'));
    const b = await ensureTinyModel(path.join(dir, 'b', 'tiny.gguf'));
    const bytes = readFileSync(a);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('GGUF');
    expect(bytes.equals(readFileSync(b))).toBe(true);
    // A shape change is a different model.
    const c = await ensureTinyModel(path.join(dir, 'c', 'tiny.gguf'), { ...TINY_SHAPE, seed: TINY_SHAPE.seed + 1 });
    expect(readFileSync(c).equals(bytes)).toBe(false);
  });
});

describe('managed model server', () => {
  it('is healthy and idle once started, and lists its one model', async () => {
    expect(await probeModelServer(base, 'hangar-tiny')).toEqual({ healthy: true, busy: 0, queued: 0, slots: 2 });
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['hangar-tiny']);
    expect((await fetch(`${base}/v1/models/hangar-tiny`)).status).toBe(200);
    expect((await fetch(`${base}/v1/models/other`)).status).toBe(404);
  });

  it('answers a chat completion up to max_tokens with usage', async () => {
    const res = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hello there' }], max_tokens: 12 });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; model: string; choices: Array<{ message: { role: string; content: string }; finish_reason: string }>; usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } };
    expect(body.object).toBe('chat.completion');
    expect(body.model).toBe('hangar-tiny');
    expect(body.choices[0].message.role).toBe('assistant');
    expect(body.choices[0].message.content.length).toBeGreaterThan(0);
    // The tiny model never ends on its own: it stops at the limit.
    expect(body.choices[0].finish_reason).toBe('length');
    expect(body.usage.completion_tokens).toBe(12);
    expect(body.usage.prompt_tokens).toBeGreaterThan(3);
    expect(body.usage.total_tokens).toBe(body.usage.prompt_tokens + 12);
  });

  it('streams a chat completion chunk by chunk, then the finish, the usage and [DONE]', async () => {
    const res = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }], max_tokens: 40, stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const msgs = await readStream(res);
    expect(msgs.at(-1)!.data).toBe('[DONE]');
    const chunks = msgs.slice(0, -1).map((m) => JSON.parse(m.data) as { object: string; choices: Array<{ delta: { role?: string; content?: string }; finish_reason: string | null }>; usage?: { completion_tokens: number } });
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    const content = chunks.filter((c) => c.choices[0]?.delta.content);
    expect(content.length).toBeGreaterThan(5);
    expect(chunks.at(-2)!.choices[0].finish_reason).toBe('length');
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage!.completion_tokens).toBe(40);
    // Written as generated, not in one piece at the end: the chunks reached the client in many reads.
    expect(new Set(msgs.map((m) => m.at)).size).toBeGreaterThan(3);
  });

  it('passes tool definitions to the model, and reads assistant tool calls and tool results in the history', async () => {
    const messages = [{ role: 'user', content: 'list the files' }];
    const tools = [{ type: 'function', function: { name: 'list_directory', description: 'List a directory', parameters: { type: 'object', properties: { path: { type: 'string' } }, required: ['path'], additionalProperties: false } } }];
    const plain = (await (await post('/v1/chat/completions', { messages, max_tokens: 2 })).json()) as { usage: { prompt_tokens: number } };
    const withTools = (await (await post('/v1/chat/completions', { messages, tools, max_tokens: 2 })).json()) as { usage: { prompt_tokens: number } };
    expect(withTools.usage.prompt_tokens).toBeGreaterThan(plain.usage.prompt_tokens);
    const followUp = await post('/v1/chat/completions', {
      messages: [
        ...messages,
        { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'list_directory', arguments: '{"path":"."}' } }] },
        { role: 'tool', tool_call_id: 'c1', content: 'a.txt\nb.txt' },
      ],
      tools,
      max_tokens: 4,
    });
    expect(followUp.status).toBe(200);
  });

  it('completes text, honouring stop strings', async () => {
    const greedy = (await (await post('/v1/completions', { prompt: 'the host', max_tokens: 10, temperature: 0 })).json()) as { object: string; choices: Array<{ text: string; finish_reason: string }> };
    expect(greedy.object).toBe('text_completion');
    const text = greedy.choices[0].text;
    expect(greedy.choices[0].finish_reason).toBe('length');
    const words = text.trim().split(/\s+/);
    expect(words.length).toBeGreaterThan(2);
    // Greedy decoding is deterministic: stopping at the second word leaves exactly the first.
    const stop = ` ${words[1]}`;
    const stopped = (await (await post('/v1/completions', { prompt: 'the host', max_tokens: 10, temperature: 0, stop: [stop] })).json()) as { choices: Array<{ text: string; finish_reason: string }> };
    expect(stopped.choices[0].text).toBe(text.slice(0, text.indexOf(stop)));
    expect(stopped.choices[0].finish_reason).toBe('stop');
  });

  it('embeds inputs as equal-length vectors, the same text always the same vector', async () => {
    const res = await post('/v1/embeddings', { input: ['the host', 'a model', 'the host'] });
    const body = (await res.json()) as { data: Array<{ index: number; embedding: number[] }>; usage: { prompt_tokens: number } };
    expect(body.data.map((d) => d.index)).toEqual([0, 1, 2]);
    expect(body.data[0].embedding).toHaveLength(TINY_SHAPE.embd);
    expect(body.data[2].embedding).toEqual(body.data[0].embedding);
    expect(body.data[1].embedding).not.toEqual(body.data[0].embedding);
    expect(body.usage.prompt_tokens).toBeGreaterThan(0);
  });

  it('refuses bad requests with OpenAI error bodies and stays up', async () => {
    const cases: Array<[string, string, number]> = [
      ['/v1/chat/completions', '{"messages": []}', 400],
      ['/v1/chat/completions', 'not json', 400],
      ['/v1/chat/completions', '{"messages":[{"role":"wizard","content":"x"}]}', 400],
      ['/v1/chat/completions', '{"messages":[{"role":"user","content":"x"}],"max_tokens":-1}', 400],
      ['/v1/completions', '{"prompt": 7}', 400],
      ['/v1/embeddings', '{}', 400],
      ['/v1/nothing', '{}', 404],
    ];
    for (const [p, body, status] of cases) {
      const res = await fetch(`${base}${p}`, { method: 'POST', body });
      expect(res.status, `${p} ${body}`).toBe(status);
      const err = (await res.json()) as { error: { message: string; type: string } };
      expect(err.error.message.length).toBeGreaterThan(0);
    }
    expect((await fetch(`${base}/v1/chat/completions`)).status).toBe(405);
    const huge = await fetch(`${base}/v1/chat/completions`, { method: 'POST', body: 'x'.repeat(33 * 1024 * 1024) }).catch(() => null);
    if (huge) expect(huge.status).toBe(413);
    expect((await probeModelServer(base, 'hangar-tiny')).healthy).toBe(true);
  });

  it('answers 503 with Retry-After when every slot is busy and the queue is full, and frees slots of clients that leave', async () => {
    const aborts = [new AbortController(), new AbortController(), new AbortController()];
    // Two generate, one waits (queue of one); all stream so they can be cut off mid-answer.
    const long = aborts.map((a) => post('/v1/chat/completions', { messages: [{ role: 'user', content: 'go' }], max_tokens: 3000, stream: true }, a.signal));
    const deadline = Date.now() + 30_000;
    while ((await probeModelServer(base, 'hangar-tiny')).queued !== 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const refused = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    for (const a of aborts) a.abort();
    await Promise.allSettled(long);
    expect(await waitIdle()).toMatchObject({ busy: 0, queued: 0 });
    const after = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'x' }], max_tokens: 1 });
    expect(after.status).toBe(200);
  });

  it('stops when told, and a killed server is reported gone', async () => {
    const other = new ManagedModelServer({ model: 'hangar-tiny', modelsDir: dir, slots: 1, threads: 1 });
    const url = await other.start();
    expect((await probeModelServer(url, 'hangar-tiny')).healthy).toBe(true);
    const exited = new Promise<string>((r) => other.onExit((code, signal) => r(String(signal ?? code))));
    other.kill();
    expect(await exited).toBe('SIGKILL');
    const h = await probeModelServer(url, 'hangar-tiny');
    expect(h.healthy).toBe(false);
    expect(h.error).toMatch(/unreachable/);
  });

  it('fails to start with a message that says where the model was looked for', async () => {
    const missing = new ManagedModelServer({ model: 'llama3:70b', modelsDir: dir });
    await expect(missing.start()).rejects.toThrow(/llama3_70b\.gguf/);
    expect(missing.running).toBe(false);
  });
});
