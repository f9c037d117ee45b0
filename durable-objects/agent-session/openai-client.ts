/**
 * A client of OpenAI-compatible chat completions, as an agent session calls
 * its model: tool definitions in, an assistant message (text and tool calls)
 * and token usage out. Streamed by default, so a model that stops sending is
 * noticed (an idle limit between chunks) as well as one that takes too long
 * overall (a deadline on the whole call). Transient failures — a refused or
 * dropped connection, 429, 500, 502, 503, 504 — are retried a few times
 * within the deadline, never after an answer has begun. Runs in workerd and
 * in Node: fetch and web streams only.
 */
import { z } from 'zod';
import { sleep } from './abortable-wait.ts';
import { ChatCompletion, ChatCompletionChunk, type ChatMessage, type ToolCall, type ToolDefinition, type Usage } from '../../schema/openai.ts';

export interface ModelEndpoint {
  /** Base URL including `/v1` (what OpenAI clients call base_url). */
  baseUrl: string;
  apiKey: string | null;
  model: string;
  /** How to reach it: the global fetch, or a binding's (a cluster is reached through its object). */
  fetch?: (req: Request) => Promise<Response>;
}

export interface ChatRequest {
  messages: ChatMessage[];
  tools?: ToolDefinition[];
  max_tokens?: number;
  temperature?: number;
}

export interface ModelAnswer {
  content: string;
  tool_calls: ToolCall[];
  finish_reason: string | null;
  /** Null when the provider did not say (some do not in streams). */
  usage: Usage | null;
}

export type ModelResult = { ok: true; answer: ModelAnswer } | { ok: false; error: string };

export interface CallOptions {
  /** The whole call, retries included. */
  timeoutMs: number;
  /** Longest silence between streamed chunks. */
  idleMs?: number;
  /** Stream (default) or ask for one JSON answer. */
  stream?: boolean;
  signal?: AbortSignal;
  /** Pieces of the answer's text as they come. */
  onText?: (text: string) => void;
  /** Waits between retries, ms (tests shorten them). */
  retryDelays?: number[];
}

const RETRYABLE = new Set([429, 500, 502, 503, 504]);
const DEFAULT_RETRY_DELAYS = [500, 2000, 5000];
const MAX_ERROR_BODY = 2048;
/**
 * The most of one answer read from the provider (a tenant may name their own,
 * so what it sends is not trusted): far past any answer a turn asks for
 * (4096 tokens), well short of what would weigh on the session's object.
 */
export const MAX_ANSWER_BYTES = 4 * 1024 * 1024;

class CallError extends Error {
  readonly retryable: boolean;
  readonly retryAfterMs: number | null;
  constructor(message: string, retryable: boolean, retryAfterMs: number | null = null) {
    super(message);
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Calls the model once (with retries for transient failures); never throws. */
export async function chatCompletion(ep: ModelEndpoint, req: ChatRequest, opts: CallOptions): Promise<ModelResult> {
  const deadline = AbortSignal.timeout(opts.timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
  const delays = opts.retryDelays ?? DEFAULT_RETRY_DELAYS;
  const scrub = (s: string) => (ep.apiKey && ep.apiKey.length >= 4 ? s.split(ep.apiKey).join('***') : s);
  for (let attempt = 0; ; attempt++) {
    try {
      return { ok: true, answer: await attemptCall(ep, req, opts, signal) };
    } catch (e) {
      if (signal.aborted) {
        if (opts.signal?.aborted) return { ok: false, error: 'the model call was cancelled' };
        return { ok: false, error: `the model did not answer within ${Math.round(opts.timeoutMs / 1000)} s` };
      }
      const err = e instanceof CallError ? e : new CallError(`the model call failed: ${(e as Error).message}`, true);
      if (!err.retryable || attempt >= delays.length) return { ok: false, error: scrub(err.message) };
      const wait = Math.min(err.retryAfterMs ?? delays[attempt], 10_000);
      const slept = await sleep(wait, signal);
      if (!slept) return { ok: false, error: opts.signal?.aborted ? 'the model call was cancelled' : `the model did not answer within ${Math.round(opts.timeoutMs / 1000)} s` };
    }
  }
}

async function attemptCall(ep: ModelEndpoint, req: ChatRequest, opts: CallOptions, signal: AbortSignal): Promise<ModelAnswer> {
  const stream = opts.stream ?? true;
  const body = {
    model: ep.model,
    messages: req.messages,
    ...(req.tools?.length ? { tools: req.tools, tool_choice: 'auto' } : {}),
    ...(req.max_tokens ? { max_tokens: req.max_tokens } : {}),
    ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  };
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: stream ? 'text/event-stream' : 'application/json' };
  if (ep.apiKey) headers.authorization = `Bearer ${ep.apiKey}`;
  const request = new Request(`${ep.baseUrl.replace(/\/+$/, '')}/chat/completions`, { method: 'POST', headers, body: JSON.stringify(body), signal });
  const res = await (ep.fetch ?? fetch)(request);
  if (!res.ok) {
    const text = (await readCapped(res, MAX_ERROR_BODY, signal).catch(() => '')).slice(0, MAX_ERROR_BODY);
    const retryAfter = Number(res.headers.get('retry-after'));
    throw new CallError(`the model answered HTTP ${res.status}: ${errorMessage(text)}`, RETRYABLE.has(res.status), Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : null);
  }
  const type = res.headers.get('content-type') ?? '';
  // A provider that ignores `stream` answers JSON; read whichever came.
  if (!type.includes('text/event-stream')) {
    const text = await readCapped(res, MAX_ANSWER_BYTES + 1, signal);
    if (text.length > MAX_ANSWER_BYTES) throw new CallError(`the model's answer is over ${MAX_ANSWER_BYTES} bytes`, false);
    return fromJson(text);
  }
  return readStream(res, opts, signal);
}

/** Up to about `max` bytes of the body as text (the rest is not read), for answers from outside. */
async function readCapped(res: Response, max: number, signal: AbortSignal): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  let bytes = 0;
  try {
    while (bytes < max && !signal.aborted) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.byteLength;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.cancel().catch(() => {});
  }
  return text;
}

function errorMessage(text: string): string {
  try {
    const j = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof j.error === 'string') return j.error;
    if (j.error && typeof j.error.message === 'string') return j.error.message;
    if (typeof j.message === 'string') return j.message;
  } catch {
    /* not JSON */
  }
  return text.trim() || 'no message';
}

function fromJson(text: string): ModelAnswer {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CallError('the model sent an answer that is not JSON', false);
  }
  const r = ChatCompletion.safeParse(json);
  if (!r.success) throw new CallError(`the model sent a malformed answer: ${describe(r.error)}`, false);
  const choice = r.data.choices[0];
  return { content: choice.message.content ?? '', tool_calls: choice.message.tool_calls ?? [], finish_reason: choice.finish_reason ?? null, usage: r.data.usage ?? null };
}

function describe(e: z.ZodError): string {
  const i = e.issues[0];
  return `${i.path.join('.') || 'body'}: ${i.message}`;
}

/** Reads SSE `data:` messages, joining text and tool-call pieces, until `[DONE]` or the end. */
async function readStream(res: Response, opts: CallOptions, signal: AbortSignal): Promise<ModelAnswer> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const idleMs = opts.idleMs ?? 60_000;
  let buf = '';
  let received = 0;
  let content = '';
  let finish: string | null = null;
  let usage: Usage | null = null;
  let sawAny = false;
  const calls = new Map<number, { id: string; name: string; arguments: string }>();
  const onMessage = (data: string): boolean => {
    if (data === '[DONE]') return true;
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      throw new CallError('the model streamed a chunk that is not JSON', false);
    }
    if (json && typeof json === 'object' && 'error' in json) throw new CallError(`the model failed mid-answer: ${errorMessage(data)}`, false);
    const r = ChatCompletionChunk.safeParse(json);
    if (!r.success) throw new CallError(`the model streamed a malformed chunk: ${describe(r.error)}`, false);
    sawAny = true;
    if (r.data.usage) usage = r.data.usage;
    for (const choice of r.data.choices) {
      if ((choice.index ?? 0) !== 0) continue;
      const d = choice.delta;
      if (d?.content) {
        content += d.content;
        opts.onText?.(d.content);
      }
      for (const tc of d?.tool_calls ?? []) {
        const call = calls.get(tc.index) ?? { id: '', name: '', arguments: '' };
        if (tc.id) call.id = tc.id;
        if (tc.function?.name) call.name += tc.function.name;
        if (tc.function?.arguments) call.arguments += tc.function.arguments;
        calls.set(tc.index, call);
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    return false;
  };
  try {
    for (;;) {
      const next = await readWithin(reader, idleMs, signal);
      if (next.done) break;
      received += next.value?.byteLength ?? 0;
      if (received > MAX_ANSWER_BYTES) throw new CallError(`the model's answer is over ${MAX_ANSWER_BYTES} bytes`, false);
      buf += decoder.decode(next.value, { stream: true }).replace(/\r\n/g, '\n');
      let end: number;
      let finished = false;
      while ((end = buf.indexOf('\n\n')) !== -1) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data:'))
          .map((l) => l.slice(5).replace(/^ /, ''))
          .join('\n');
        if (data && onMessage(data)) finished = true;
      }
      if (finished) break;
    }
  } catch (e) {
    // A connection lost mid-answer is not retried: part of the answer was already taken.
    if (sawAny && !(e instanceof CallError) && !signal.aborted) throw new CallError(`the model's answer broke off: ${(e as Error).message}`, false);
    throw e;
  } finally {
    reader.cancel().catch(() => {});
  }
  if (!sawAny) throw new CallError('the model ended its answer before sending anything', true);
  const tool_calls: ToolCall[] = [...calls.entries()]
    .sort(([a], [b]) => a - b)
    .map(([i, c]) => ({ id: c.id || `call_${i}`, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }));
  return { content, tool_calls, finish_reason: finish, usage };
}

async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, idleMs: number, signal: AbortSignal): Promise<{ done: boolean; value?: Uint8Array }> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await Promise.race([
      reader.read(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new CallError(`the model sent nothing for ${Math.round(idleMs / 1000)} s`, false)), idleMs);
        onAbort = () => reject(signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
      }),
    ]);
  } finally {
    clearTimeout(timer);
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}
