/**
 * The managed model server's HTTP face: the OpenAI-compatible routes
 * (`/v1/chat/completions` streamed and not, `/v1/completions`,
 * `/v1/embeddings`, `/v1/models`; each also without `/v1`, as llama.cpp's
 * server answers) and `/health`, which says whether the model is loaded and
 * how busy the server is. Streamed answers are Server-Sent Events written
 * chunk by chunk as tokens come (no buffering: Nagle off, one write a chunk).
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { ChatCompletionRequest, CompletionRequest, EmbeddingRequest } from '../../schema/openai.ts';
import type { Engine, Generation, Sampling } from './engine.ts';
import { chatHistory, toolFunctions } from './chat-history.ts';
import { HttpError, readJson, sendError, sendJson } from './http-body.ts';
import { QueueFullError } from './slot-queue.ts';

export interface ServerOptions {
  /** The name the model is served under (`/v1/models`, `model` in answers). */
  modelId: string;
  /** Tokens a completion generates when the request names no max_tokens (OpenAI's is 16). */
  defaultCompletionTokens?: number;
}

/** Sampling temperature when a request names none (llama.cpp's server default; 0 is greedy). */
const DEFAULT_TEMPERATURE = 0.8;

type Route = (req: IncomingMessage, res: ServerResponse, signal: AbortSignal) => Promise<void>;

export function createModelServer(engine: Engine, opts: ServerOptions): http.Server {
  const created = Math.floor(Date.now() / 1000);
  const modelObject = { id: opts.modelId, object: 'model', created, owned_by: 'hangar' };

  const routes: Record<string, Route> = {
    'GET /health': async (_req, res) => sendJson(res, 200, { status: 'ok', model: opts.modelId, ...engine.load() }),
    'GET /models': async (_req, res) => sendJson(res, 200, { object: 'list', data: [modelObject] }),
    'POST /chat/completions': async (req, res, signal) => chat(engine, opts, parse(ChatCompletionRequest, await readJson(req)), res, signal),
    'POST /completions': async (req, res, signal) => completions(engine, opts, parse(CompletionRequest, await readJson(req)), res, signal),
    'POST /embeddings': async (req, res, signal) => embeddings(engine, opts, parse(EmbeddingRequest, await readJson(req)), res, signal),
  };

  const server = http.createServer((req, res) => {
    res.socket?.setNoDelay(true);
    const abort = new AbortController();
    // The client went away before the answer was done: stop generating for it.
    res.on('close', () => {
      if (!res.writableFinished) abort.abort(new Error('the client closed the connection'));
    });
    const url = new URL(req.url ?? '/', 'http://model');
    const path = url.pathname.replace(/^\/v1(?=\/)/, '').replace(/\/+$/, '') || '/';
    let route = routes[`${req.method} ${path}`];
    if (!route && req.method === 'GET' && path.startsWith('/models/')) {
      const id = decodeURIComponent(path.slice('/models/'.length));
      route = async (_q, r) => (id === opts.modelId ? sendJson(r, 200, modelObject) : sendError(r, new HttpError(404, 'invalid_request_error', `model ${id} is not served here; this server serves ${opts.modelId}`)));
    }
    if (!route) {
      const known = Object.keys(routes).some((k) => k.endsWith(` ${path}`));
      sendError(res, new HttpError(known ? 405 : 404, 'invalid_request_error', known ? `${req.method} is not allowed on ${url.pathname}` : `no route ${url.pathname}`));
      return;
    }
    route(req, res, abort.signal).catch((e: unknown) => {
      if (e instanceof QueueFullError) sendError(res, new HttpError(503, 'server_busy', e.message, { 'retry-after': '1' }));
      else sendError(res, e);
    });
  });
  server.keepAliveTimeout = 60_000;
  return server;
}

function parse<S extends z.ZodType>(schema: S, body: unknown): z.infer<S> {
  const r = schema.safeParse(body);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new HttpError(400, 'invalid_request_error', `${issue.path.join('.') || 'body'}: ${issue.message}`);
}

/** The sampling fields chat and text completions share, with the server's defaults. */
function samplingOf(body: ChatCompletionRequest | CompletionRequest, maxTokens: number | undefined, signal: AbortSignal): Omit<Sampling, 'onText'> {
  const stop = body.stop == null ? undefined : Array.isArray(body.stop) ? body.stop : [body.stop];
  return { maxTokens, temperature: body.temperature ?? DEFAULT_TEMPERATURE, topP: body.top_p ?? undefined, seed: body.seed ?? undefined, stop, signal };
}

/** Writes one SSE `data:` line per chunk, at once. */
function sse(res: ServerResponse): (data: unknown) => void {
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
  res.flushHeaders();
  return (data) => res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

function usage(g: Generation) {
  return { prompt_tokens: g.promptTokens, completion_tokens: g.completionTokens, total_tokens: g.promptTokens + g.completionTokens };
}

async function chat(engine: Engine, opts: ServerOptions, body: ChatCompletionRequest, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  const base = { id, created, model: opts.modelId, system_fingerprint: 'hangar' };
  const history = chatHistory(body.messages);
  const functions = body.tool_choice === 'none' ? undefined : toolFunctions(body.tools);
  const sampling = samplingOf(body, body.max_completion_tokens ?? body.max_tokens ?? undefined, signal);
  if (!body.stream) {
    const g = await engine.chat(history, functions, { ...sampling, onText: () => {} });
    sendJson(res, 200, {
      ...base,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: g.toolCalls.length && !g.text ? null : g.text, ...toolCalls(g, id) }, finish_reason: g.finish, logprobs: null }],
      usage: usage(g),
    });
    return;
  }
  // Headers go out only when a slot is ours, so a busy server can still answer 503.
  let send: ((data: unknown) => void) | null = null;
  const chunk = (delta: object, finish: string | null = null) => ({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
  const start = () => {
    if (send) return send;
    send = sse(res);
    send(chunk({ role: 'assistant', content: '' }));
    return send;
  };
  const g = await engine.chat(history, functions, { ...sampling, onText: (text) => text && start()(chunk({ content: text })) });
  const out = start();
  if (g.toolCalls.length) out(chunk({ tool_calls: g.toolCalls.map((c, index) => ({ index, id: `call_${id.slice(-12)}_${index}`, type: 'function', function: { name: c.name, arguments: c.arguments } })) }));
  out(chunk({}, g.finish));
  if (body.stream_options?.include_usage) out({ ...base, object: 'chat.completion.chunk', choices: [], usage: usage(g) });
  out('[DONE]');
  res.end();
}

function toolCalls(g: Generation, id: string) {
  if (!g.toolCalls.length) return {};
  return { tool_calls: g.toolCalls.map((c, i) => ({ id: `call_${id.slice(-12)}_${i}`, type: 'function', function: { name: c.name, arguments: c.arguments } })) };
}

async function completions(engine: Engine, opts: ServerOptions, body: CompletionRequest, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const id = `cmpl-${randomUUID()}`;
  const base = { id, created: Math.floor(Date.now() / 1000), model: opts.modelId };
  const prompts = Array.isArray(body.prompt) ? body.prompt : [body.prompt];
  const sampling = samplingOf(body, body.max_tokens ?? opts.defaultCompletionTokens ?? 16, signal);
  if (!body.stream) {
    const gens: Generation[] = [];
    for (const p of prompts) gens.push(await engine.complete(p, { ...sampling, onText: () => {} }));
    const total = gens.reduce((u, g) => ({ p: u.p + g.promptTokens, c: u.c + g.completionTokens }), { p: 0, c: 0 });
    sendJson(res, 200, {
      ...base,
      object: 'text_completion',
      choices: gens.map((g, index) => ({ text: g.text, index, logprobs: null, finish_reason: g.finish })),
      usage: { prompt_tokens: total.p, completion_tokens: total.c, total_tokens: total.p + total.c },
    });
    return;
  }
  let send: ((data: unknown) => void) | null = null;
  const out = () => (send ??= sse(res));
  const chunk = (index: number, text: string, finish: string | null = null) => ({ ...base, object: 'text_completion', choices: [{ text, index, logprobs: null, finish_reason: finish }] });
  let p = 0;
  let c = 0;
  for (const [index, prompt] of prompts.entries()) {
    const g = await engine.complete(prompt, { ...sampling, onText: (text) => text && out()(chunk(index, text)) });
    out()(chunk(index, '', g.finish));
    p += g.promptTokens;
    c += g.completionTokens;
  }
  if (body.stream_options?.include_usage) out()({ ...base, object: 'text_completion', choices: [], usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } });
  out()('[DONE]');
  res.end();
}

async function embeddings(engine: Engine, opts: ServerOptions, body: EmbeddingRequest, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const inputs = Array.isArray(body.input) ? body.input : [body.input];
  const { vectors, tokens } = await engine.embed(inputs, signal);
  sendJson(res, 200, {
    object: 'list',
    model: opts.modelId,
    data: vectors.map((v, index) => ({
      object: 'embedding',
      index,
      embedding: body.encoding_format === 'base64' ? Buffer.from(Float32Array.from(v).buffer).toString('base64') : v,
    })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}
