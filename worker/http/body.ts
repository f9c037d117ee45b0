/** Reading and validating request bodies: size cap, JSON parsing, zod with messages that name the field. */
import type { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';

/** JSON bodies above this are refused with 413 before they are parsed. */
export const MAX_JSON_BODY_BYTES = 1024 * 1024;

/**
 * A body past the cap that arrives without a length (chunked) is read to its
 * end and dropped, up to this much, before the 413 goes out: a server that
 * answers and closes while the client is still sending resets the
 * connection, and the client never sees the answer. Cloudflare's edge refuses
 * bodies over 100 MB itself, so nothing larger reaches the Worker there.
 */
const DRAIN_LIMIT_BYTES = 128 * 1024 * 1024;

/** Reads the raw body as text, refusing anything over the cap without keeping it. */
export async function readBodyText(request: Request, limit = MAX_JSON_BODY_BYTES): Promise<string> {
  const declared = Number(request.headers.get('content-length') ?? '0');
  if (declared > limit) throw tooLarge(limit);
  if (!request.body) return '';
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await drain(reader, size);
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.byteLength;
  }
  return new TextDecoder().decode(all);
}

/** Reads what is left of a body and drops it, up to DRAIN_LIMIT_BYTES in all; past that the client is on its own. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, already: number): Promise<void> {
  let read = already;
  try {
    while (read <= DRAIN_LIMIT_BYTES) {
      const { done, value } = await reader.read();
      if (done) return;
      read += value.byteLength;
    }
  } catch {
    return; // the client went away: nobody to answer
  }
  await reader.cancel().catch(() => {});
}

const tooLarge = (limit: number) =>
  new ApiError('PAYLOAD_TOO_LARGE', `request body is larger than ${limit} bytes`);

/** Parses JSON text; an empty body is `{}` so bodies whose fields are all optional may be left out. */
export function parseJson(text: string): unknown {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError('INVALID_JSON', `request body is not valid JSON: ${(e as Error).message}`);
  }
}

/** Validates with zod; the first issue becomes a 400 whose message names the field, e.g. "name is required". */
export function validate<T>(schema: z.ZodType<T>, value: unknown, what = 'request body'): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const field = issue.path.map(String).join('.');
  if (!field) throw new ApiError('VALIDATION_FAILED', `${what}: ${issue.message}`);
  const missing = issue.code === 'invalid_type' && /received undefined/.test(issue.message);
  throw new ApiError('VALIDATION_FAILED', missing ? `${field} is required` : `${field}: ${issue.message}`);
}
