/** A small HTTP client for end-to-end tests: the API as a user's program calls it. */
import { inject } from 'vitest';
import { seedTenant } from '../../scripts/local-stack.ts';

export const hangar = () => inject('hangar');

export interface Reply<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

/** A reply read as text, for requests whose answer may not be JSON. */
export interface RawReply {
  status: number;
  text: string;
  headers: Headers;
}

/** What fetch accepts as a body: text, bytes, or a stream (sent chunked). */
export type RawBody = NonNullable<RequestInit['body']>;

export interface RawInit {
  body?: RawBody;
  headers?: Record<string, string>;
  /** Bearer credential; null sends none. Defaults to the client's key. */
  auth?: string | null;
}

/** Sends exactly this method, path (relative to the API URL, or absolute), body and headers: no JSON encoding, no defaults but the credential. */
export async function rawFetch(url: string, method: string, init: RawInit = {}): Promise<RawReply> {
  const headers: Record<string, string> = { ...(init.auth ? { authorization: `Bearer ${init.auth}` } : {}), ...init.headers };
  // A stream body goes out chunked, without Content-Length; fetch needs duplex for that.
  const r = await fetch(url, { method, headers, body: init.body, duplex: 'half' });
  return { status: r.status, text: await r.text(), headers: r.headers };
}

export class Client {
  readonly apiUrl: string;
  readonly key: string;
  /** The organization the key belongs to, when the client was made by newTenant. */
  readonly orgId: string;

  constructor(apiUrl: string, key: string, orgId = '') {
    this.apiUrl = apiUrl;
    this.key = key;
    this.orgId = orgId;
  }

  /** A raw request with this client's key (unless init.auth says otherwise). */
  raw(method: string, path: string, init: RawInit = {}): Promise<RawReply> {
    return rawFetch(this.apiUrl + path, method, { ...init, auth: init.auth === undefined ? this.key : init.auth });
  }

  async call<T = Record<string, unknown>>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply<T>> {
    const r = await fetch(this.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${this.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await r.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON: keep the text */
    }
    return { status: r.status, body: parsed as T, headers: r.headers };
  }

  get = <T = Record<string, unknown>>(p: string) => this.call<T>('GET', p);
  post = <T = Record<string, unknown>>(p: string, b?: unknown) => this.call<T>('POST', p, b);
  patch = <T = Record<string, unknown>>(p: string, b?: unknown) => this.call<T>('PATCH', p, b);
  del = <T = Record<string, unknown>>(p: string) => this.call<T>('DELETE', p);

  /** Polls GET /computers/{id} until its status is `status` (or fails after `ms`). */
  async waitFor(id: string, status: string, ms = 180_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    let last: unknown;
    while (Date.now() < deadline) {
      const r = await this.get(`/computers/${id}`);
      last = r.body;
      if (r.status === 200 && r.body.status === status) return r.body;
      if (r.status === 200 && r.body.status === 'error') throw new Error(`computer ${id} went to error`);
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`computer ${id} not ${status} within ${ms} ms; last: ${JSON.stringify(last)}`);
  }

  /** Creates a computer and waits until it runs. */
  async runningComputer(name = 'e2e', extra: Record<string, unknown> = {}): Promise<string> {
    const r = await this.post('/computers', { name, template_type: 'miosa-desktop', ...extra });
    if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.body)}`);
    const id = r.body.id as string;
    await this.waitFor(id, 'running');
    return id;
  }

  exec(id: string, command: string, timeout?: number) {
    return this.post<{ output: string; stdout: string; stderr: string; exit_code: number; timed_out: boolean; truncated: boolean }>(`/computers/${id}/exec`, { command, timeout });
  }
}

/** A fresh organization with credits and its key. */
export async function newTenant(name = 'e2e', opts: { credits?: number; rate_limit_per_minute?: number } = {}): Promise<Client> {
  const h = hangar();
  const t = await seedTenant(h.origin, h.operatorToken, { name, credits: opts.credits ?? 1000, rate_limit_per_minute: opts.rate_limit_per_minute ?? 100_000 });
  return new Client(h.apiUrl, t.api_key, t.org_id);
}

/** A client of the operator (admin) API; its paths start with /admin. */
export const operatorClient = (): Client => new Client(hangar().apiUrl, hangar().operatorToken);
