/** Small HTTP helpers of the model server: bounded JSON bodies and OpenAI-shaped error answers. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { openAiError } from '../../schema/openai.ts';

/** Request bodies past this are refused with 413 (long agent conversations fit well inside). */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

export class HttpError extends Error {
  readonly status: number;
  readonly type: string;
  readonly headers: Record<string, string>;
  constructor(status: number, type: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.type = type;
    this.headers = headers;
  }
}

/** The request's JSON body; 413 past the limit, 400 when it is not JSON. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY_BYTES) throw new HttpError(413, 'invalid_request_error', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, 'invalid_request_error', `the request body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_request_error', 'the request body is not valid JSON');
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, e: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const err = e instanceof HttpError ? e : new HttpError(500, 'server_error', `the model server failed: ${(e as Error)?.message ?? String(e)}`);
  sendJson(res, err.status, openAiError(err.message, err.type), err.headers);
}
