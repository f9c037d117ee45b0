/**
 * One request to a cluster's inference URL, sent to a member: the least busy
 * one in rotation; if it fails before its answer begins (the connection is
 * refused or dropped, or the server says it is full), the member is reported
 * and the request goes to the next, up to every member once. Once an answer
 * has begun it is the answer: passed through chunk by chunk as it arrives,
 * never buffered, never retried. The answer names its member in a header.
 *
 * Where the members are and how bytes reach them is not this module's
 * business: a MemberPicker (the cluster's object) chooses and keeps count; a
 * MemberTransport (the host's relay) carries the request.
 */
import { openAiError } from '../../schema/openai.ts';

export const MEMBER_HEADER = 'x-hangar-cluster-member';

/** Request bodies kept for a retry on another member; larger ones are refused (413). */
export const MAX_INFERENCE_BODY = 32 * 1024 * 1024;

export interface MemberPick {
  host_id: string;
  port: number;
  /** Identifies this use of the member, for `done`. */
  lease: string;
}

export interface MemberPicker {
  /** The next member to try (none of `tried`), or null when no member is in rotation. */
  pick(tried: string[]): Promise<MemberPick | null>;
  /** The request on `pick` is over: it failed before its answer began (`failed` says why), or its answer ended. */
  done(pick: MemberPick, failed: string | null): Promise<void>;
}

export type TransportResult = { ok: true; response: Response } | { ok: false; error: string };

export interface MemberTransport {
  /** Sends `request` to the model server on the member's host; fails (never throws) when no answer began. */
  send(pick: MemberPick, request: Request): Promise<TransportResult>;
}

/** Answers a member gives that mean "try another": nothing of the answer has gone to the client yet. */
const RETRY_STATUSES = new Set([502, 503]);

function errorResponse(status: number, message: string, type: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(openAiError(message, type)), { status, headers: { 'content-type': 'application/json', ...headers } });
}

/** Sends an inference request (its path already relative to `/v1`) to the cluster's members. */
export async function proxyInference(request: Request, path: string, picker: MemberPicker, transport: MemberTransport): Promise<Response> {
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > MAX_INFERENCE_BODY) return errorResponse(413, `the request body is larger than ${MAX_INFERENCE_BODY} bytes`, 'invalid_request_error');
  // The body is read once and kept, so the same bytes can go to another member.
  const body = request.method === 'GET' || request.method === 'HEAD' ? null : new Uint8Array(await request.arrayBuffer());
  if (body && body.byteLength > MAX_INFERENCE_BODY) return errorResponse(413, `the request body is larger than ${MAX_INFERENCE_BODY} bytes`, 'invalid_request_error');
  const headers = new Headers();
  for (const name of ['content-type', 'accept', 'openai-beta', 'user-agent']) {
    const v = request.headers.get(name);
    if (v) headers.set(name, v);
  }
  const tried: string[] = [];
  const failures: string[] = [];
  for (;;) {
    const m = await picker.pick(tried);
    if (!m) {
      const why = failures.length ? ` (${failures.join('; ')})` : '';
      return errorResponse(503, `no member of this cluster can take the request now${why}`, 'server_unavailable', { 'retry-after': '1' });
    }
    tried.push(m.host_id);
    const upstream = new Request(`http://127.0.0.1:${m.port}/v1${path}`, { method: request.method, headers, body });
    const r = await transport.send(m, upstream).catch((e: unknown): TransportResult => ({ ok: false, error: (e as Error).message }));
    if (!r.ok) {
      failures.push(`${m.host_id}: ${r.error}`);
      await picker.done(m, r.error);
      continue;
    }
    if (RETRY_STATUSES.has(r.response.status)) {
      const text = await r.response.text().catch(() => '');
      failures.push(`${m.host_id}: HTTP ${r.response.status}`);
      // A full server is healthy, only busy: it stays in rotation.
      await picker.done(m, r.response.status === 503 ? null : `HTTP ${r.response.status}: ${text.slice(0, 200)}`);
      continue;
    }
    return passThrough(r.response, m, picker);
  }
}

/** The member's answer as the client's, with the member named; the lease ends when the body does. */
function passThrough(res: Response, m: MemberPick, picker: MemberPicker): Response {
  const headers = new Headers(res.headers);
  headers.set(MEMBER_HEADER, m.host_id);
  headers.delete('content-length');
  headers.delete('transfer-encoding');
  headers.delete('connection');
  headers.delete('keep-alive');
  let ended = false;
  const end = (failed: string | null) => {
    if (ended) return;
    ended = true;
    void picker.done(m, failed);
  };
  if (!res.body) {
    end(null);
    return new Response(null, { status: res.status, headers });
  }
  const reader = res.body.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          end(null);
        } else controller.enqueue(value);
      } catch (e) {
        // The member broke off mid-answer: the client's answer ends short, and the member leaves the rotation.
        controller.error(e);
        end(`the answer broke off: ${(e as Error).message}`);
      }
    },
    cancel(reason) {
      // The client went away: not the member's fault.
      end(null);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  return new Response(body, { status: res.status, headers });
}
