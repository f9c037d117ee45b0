/** The one error envelope every 4xx/5xx carries, checked strictly: shape, code, status and request id. */
import { ERROR_STATUS, type ErrorCode } from '../../schema/errors.ts';
import type { RawReply } from './client.ts';

export interface ErrorEnvelope {
  error: { code: ErrorCode; message: string; request_id: string };
}

/**
 * What is wrong with `r` as an error reply (null when nothing): JSON
 * `{error:{code,message,request_id}}` and nothing else, a known code whose
 * status is the reply's, and X-Request-Id equal to request_id.
 */
export function envelopeProblem(r: RawReply, status?: number, code?: ErrorCode): string | null {
  if (status !== undefined && r.status !== status) return `status ${r.status}, expected ${status}: ${r.text.slice(0, 300)}`;
  if (r.status < 400 || r.status > 599) return `status ${r.status} is not an error: ${r.text.slice(0, 300)}`;
  if (!/^application\/json/.test(r.headers.get('content-type') ?? '')) return `content-type ${r.headers.get('content-type')}`;
  let body: unknown;
  try {
    body = JSON.parse(r.text);
  } catch {
    return `body is not JSON: ${r.text.slice(0, 300)}`;
  }
  const env = body as Partial<ErrorEnvelope>;
  const e = env.error;
  if (!e || Object.keys(body as object).join() !== 'error') return `not an envelope: ${r.text.slice(0, 300)}`;
  if (Object.keys(e).sort().join() !== 'code,message,request_id') return `envelope fields ${Object.keys(e).join()}`;
  if (typeof e.message !== 'string' || e.message === '') return 'empty message';
  if (!(e.code in ERROR_STATUS)) return `unknown code ${e.code}`;
  if (ERROR_STATUS[e.code as ErrorCode] !== r.status) return `code ${e.code} with status ${r.status}`;
  if (code !== undefined && e.code !== code) return `code ${e.code}, expected ${code}: ${e.message}`;
  if (typeof e.request_id !== 'string' || !e.request_id || r.headers.get('x-request-id') !== e.request_id) {
    return `request_id ${e.request_id} vs X-Request-Id ${r.headers.get('x-request-id')}`;
  }
  return null;
}

/** Throws (failing the test) unless `r` is a proper error envelope; returns it. */
export function expectEnvelope(r: RawReply, status?: number, code?: ErrorCode, label = ''): ErrorEnvelope {
  const problem = envelopeProblem(r, status, code);
  if (problem) throw new Error(`${label}${label ? ': ' : ''}${problem}`);
  return JSON.parse(r.text) as ErrorEnvelope;
}
