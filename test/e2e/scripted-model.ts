/**
 * A scripted OpenAI-compatible model for tests: an outside service we cannot
 * reach here, pinned by a script. Each model name has its own script — a
 * list of answers given in order (then a fallback repeated forever) — so
 * concurrent tests never share one. It answers `POST /v1/chat/completions`
 * streamed or not, exactly as providers do (tool-call arguments arrive in
 * pieces when streamed), and records every request it got.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type ScriptStep =
  /** An answer: text, tool calls, or both. */
  | { say?: string; call?: Array<{ name: string; arguments: unknown }>; usage?: { prompt_tokens: number; completion_tokens: number }; delay_ms?: number }
  /** An HTTP error answer. */
  | { status: number; error?: string; delay_ms?: number }
  /** Never answers (until the client goes away). */
  | { hang: true };

interface Script {
  steps: ScriptStep[];
  then: ScriptStep | null;
  key: string | null;
}

export interface RecordedRequest {
  body: { model: string; messages: Array<{ role: string; content?: unknown; tool_calls?: unknown; tool_call_id?: string }>; tools?: Array<{ function: { name: string } }>; stream?: boolean; max_tokens?: number };
  authorization: string | undefined;
}

export class ScriptedModel {
  private server: http.Server | null = null;
  private readonly scripts = new Map<string, Script>();
  private readonly seen = new Map<string, RecordedRequest[]>();
  /** Requests whose answer has not finished (hanging ones included). */
  open = 0;
  baseUrl = '';

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.baseUrl = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
    return this;
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  /** Sets the answers for `model`; `then` is given after they run out (default: a 500 saying so). */
  script(model: string, steps: ScriptStep[], opts: { then?: ScriptStep; key?: string } = {}): void {
    this.scripts.set(model, { steps: [...steps], then: opts.then ?? null, key: opts.key ?? null });
    this.seen.set(model, []);
  }

  requests(model: string): RecordedRequest[] {
    return this.seen.get(model) ?? [];
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.open++;
    res.on('close', () => this.open--);
    const chunks: Buffer[] = [];
    for await (const c of req as AsyncIterable<Buffer>) chunks.push(c);
    if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) return json(res, 404, { error: { message: `no route ${req.url}` } });
    let body: RecordedRequest['body'];
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      return json(res, 400, { error: { message: 'not JSON' } });
    }
    const script = this.scripts.get(body.model);
    if (!script) return json(res, 404, { error: { message: `no script for model ${body.model}` } });
    this.seen.get(body.model)!.push({ body, authorization: req.headers.authorization });
    if (script.key && req.headers.authorization !== `Bearer ${script.key}`) return json(res, 401, { error: { message: 'bad key' } });
    const step = script.steps.shift() ?? script.then ?? { status: 500, error: `the script for ${body.model} ran out` };
    if ('hang' in step) return; // the client's timeout or cancel ends it
    if (step.delay_ms) await new Promise((r) => setTimeout(r, step.delay_ms));
    if ('status' in step) return json(res, step.status, { error: { message: step.error ?? `scripted ${step.status}` } });
    const id = `chatcmpl-${Math.random().toString(36).slice(2)}`;
    const calls = (step.call ?? []).map((c, i) => ({ id: `call_${id.slice(-6)}_${i}`, type: 'function', function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments) } }));
    const usage = { prompt_tokens: step.usage?.prompt_tokens ?? 10, completion_tokens: step.usage?.completion_tokens ?? 5 };
    const fullUsage = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
    const finish = calls.length ? 'tool_calls' : 'stop';
    if (!body.stream) {
      return json(res, 200, { id, object: 'chat.completion', model: body.model, choices: [{ index: 0, message: { role: 'assistant', content: step.say ?? null, ...(calls.length ? { tool_calls: calls } : {}) }, finish_reason: finish }], usage: fullUsage });
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (delta: object, finish_reason: string | null = null) => res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason }] })}\n\n`);
    send({ role: 'assistant', content: '' });
    for (const piece of (step.say ?? '').match(/.{1,7}/gs) ?? []) send({ content: piece });
    calls.forEach((c, index) => {
      const half = Math.floor(c.function.arguments.length / 2);
      send({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: c.function.arguments.slice(0, half) } }] });
      send({ tool_calls: [{ index, function: { arguments: c.function.arguments.slice(half) } }] });
    });
    send({}, finish);
    res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', choices: [], usage: fullUsage })}\n\n`);
    res.end('data: [DONE]\n\n');
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}
