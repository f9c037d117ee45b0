/**
 * Preview hosts in workerd tests: requests to `{port}-{slug}.sandbox.{preview_domain}`
 * built from the computer object, and a scripted app on the agent peer that
 * answers the HTTP streams the object opens (RelayPeer, relay-peer.ts).
 */
import { SELF } from 'cloudflare:test';
import { expectJson, uniqueIp } from './helpers.ts';
import type { ComputerView, World } from './computer-fixtures.ts';
import type { PeerStream, RelayPeer } from './relay-peer.ts';

export interface PreviewComputer extends ComputerView {
  preview_domain: string;
}

/** The origin a client builds from the computer object, as the spec's pattern says. */
export const previewUrl = (c: PreviewComputer, port: number, path = '/') => `https://${port}-${c.slug}.sandbox.${c.preview_domain}${path}`;

export function previewFetch(c: PreviewComputer, port: number, path = '/', init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('cf-connecting-ip')) headers.set('cf-connecting-ip', uniqueIp());
  return SELF.fetch(previewUrl(c, port, path), { redirect: 'manual', ...init, headers });
}

export async function expose(w: World, id: string, port: number, visibility = 'public', extra: Record<string, unknown> = {}) {
  return expectJson<{ data: { port: number; visibility: string; url: string; access_token: string | null; wake_on_request: boolean } }>(
    await w.api(`/${id}/ports`, { method: 'POST', body: { port, visibility, ...extra } }),
    201,
  );
}

/** What the scripted app saw of a request. */
export interface SeenRequest {
  stream: PeerStream;
  method: string;
  path: string;
  headers: [string, string][];
  header(name: string): string | undefined;
  body(): Uint8Array;
}

export interface AppReply {
  status?: number;
  headers?: [string, string][];
  body?: string | Uint8Array;
  /** Leave the stream open after the head (the test sends more). */
  hold?: boolean;
}

/**
 * Answers every HTTP stream the object opens on `peer`: once the request body
 * has arrived (the object's FIN) — or at once for a WebSocket — `reply`
 * decides the answer. Returns the requests seen, in order.
 */
export function scriptedApp(peer: { relay: RelayPeer }, reply: (req: SeenRequest) => AppReply = () => ({ body: 'ok' })): SeenRequest[] {
  const seen: SeenRequest[] = [];
  const relay: RelayPeer = peer.relay;
  const answered = new Set<PeerStream>();
  const answer = (req: SeenRequest) => {
    answered.add(req.stream);
    const r = reply(req);
    relay.respond(req.stream, r.status ?? 200, r.headers ?? [['content-type', 'text/plain']]);
    if (r.body !== undefined) relay.data(req.stream, r.body);
    if (!r.hold) relay.close(req.stream);
  };
  relay.onOpen = (s) => {
    if (!s.open.http) return;
    const h = s.open.http;
    const req: SeenRequest = {
      stream: s,
      method: h.method,
      path: h.path,
      headers: h.headers,
      header: (name) => h.headers.find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1],
      body: () => relay.bytesOf(s),
    };
    seen.push(req);
    relay.accept(s, 4 * 1024 * 1024);
    if (h.websocket) answer(req);
  };
  relay.onActivity = (s) => {
    const req = seen.find((r) => r.stream === s);
    if (!req || answered.has(s)) return;
    // Keep the object sending: credit what arrived.
    if (s.received > s.credited) relay.credit(s);
    if (s.closed) answer(req);
  };
  return seen;
}
