/**
 * The HostObject's tunnels: requests the tunnel routes send it (relay-request.ts),
 * decided against the host's tunnel table (tunnel-table.ts, tunnel-auth.ts)
 * and relayed as HTTP streams to a port on the host's loopback through the
 * host-mode agent (`host_tcp` targets). A disabled tunnel never reaches the
 * host; a host whose agent is away answers 503 HOST_OFFLINE once it has had a
 * few seconds to redial.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../../worker/env.ts';
import { previewError } from '../../worker/preview/preview-pages.ts';
import { apiKeyLive } from '../../worker/tenancy/principals.ts';
import { decideTunnelAccess, tunnelNotFound } from '../../worker/tunnels/tunnel-auth.ts';
import { TUNNEL_COOKIE_TTL_S, mintTunnelCookie, tunnelCookie } from '../../worker/tunnels/tunnel-credentials.ts';
import { loginPage } from '../../worker/tunnels/tunnel-pages.ts';
import { checkPassword } from '../../worker/tunnels/tunnel-password.ts';
import { prefixHead } from '../../worker/tunnels/tunnel-prefix.ts';
import { FailureLimit } from './failure-limit.ts';
import { relayHttp } from './http.ts';
import { useTicketOnce } from './used-tickets.ts';
import { parseRelayRequest, RELAY_REQUEST_HEADER, type RelayRequest } from './relay-request.ts';
import type { RelayMux } from './relay-mux.ts';
import { TunnelTable, type TunnelEntry, type TunnelRecord } from './tunnel-table.ts';

/** How long a tunnel request waits for the host's agent to redial before it is a 503. */
const AGENT_WAIT_MS = 5_000;
const TICKET_PREFIX = 'tunnel-ticket:';

/** What the tunnels need of the HostObject. */
export interface HostRelayHost {
  /** The tenant host this object is (bound to `ref` if it was not yet); null when it cannot tell. */
  host(ref?: { id: string; org_id: string }): Promise<{ id: string } | null>;
  /** True while the host-mode agent's socket is attached. */
  connected(): boolean;
  /** Why the host cannot serve at all (it was revoked), or null. */
  gone(): Promise<string | null>;
  /** Waits up to `ms` for the agent to attach. */
  whenAttached(ms: number): Promise<unknown>;
  storage: DurableObjectStorage;
  env: Env;
}

type TunnelOpen = Extract<RelayRequest, { kind: 'tunnel' }>;
type LoginOpen = Extract<RelayRequest, { kind: 'tunnel_login' }>;

export class HostRelay {
  readonly mux: RelayMux;
  private readonly host: HostRelayHost;
  private readonly table: TunnelTable;
  /** Wrong passwords per tunnel (failure-limit.ts). */
  private readonly failures = new Map<string, FailureLimit>();
  /** Digests of passwords accepted per tunnel, so an API client's password costs one hash check, not one per request. */
  private readonly accepted = new Map<string, Set<string>>();

  constructor(mux: RelayMux, host: HostRelayHost) {
    this.mux = mux;
    this.host = host;
    this.table = new TunnelTable(host.storage, host.env);
  }

  /** A tunnel changed (the routes call this after writing D1); `close` also ends its open connections. */
  async tunnelChanged(hostId: string, tunnelId: string, rec: TunnelRecord | null, close: string | null): Promise<void> {
    await this.table.set(hostId, tunnelId, rec);
    this.accepted.delete(tunnelId);
    this.failures.delete(tunnelId);
    if (close) this.mux.resetWhere((t) => t.tunnel_id === tunnelId, 'closed', close);
  }

  /** Marks a tunnel link's ticket used, unless it already was or the tunnel is gone. */
  async redeemTicket(tunnelId: string, jti: string, expS: number): Promise<'ok' | 'used' | 'not_found'> {
    const h = await this.host.host();
    const t = h ? await this.table.get(h.id, tunnelId) : null;
    if (!t || !t.enabled || t.auth_mode !== 'tenant_only') return 'not_found';
    return (await useTicketOnce(this.host.storage, TICKET_PREFIX, jti, expS)) ? 'ok' : 'used';
  }

  /** Handles a relay request; null when it is not a tunnel's (the caller answers it). */
  async fetch(request: Request): Promise<Response | null> {
    const open = parseRelayRequest(request.headers.get(RELAY_REQUEST_HEADER));
    if (open?.kind === 'tunnel') return this.tunnel(request, open);
    if (open?.kind === 'tunnel_login') return this.login(request, open);
    return null;
  }

  private async entry(open: TunnelOpen | LoginOpen): Promise<TunnelEntry | null> {
    const h = await this.host.host({ id: open.host_id, org_id: open.org_id });
    const t = h ? await this.table.get(h.id, open.tunnel_id) : null;
    // A slug deleted and given to another tunnel meanwhile: the client meant the other one.
    return t && t.slug === open.slug ? t : null;
  }

  private async tunnel(request: Request, open: TunnelOpen): Promise<Response> {
    try {
      const t = await this.entry(open);
      const access = await decideTunnelAccess(
        t,
        { slug: open.slug, method: request.method, path: open.path, base: open.base, wantsHtml: open.wants_html, who: open.who },
        { keyLive: (kid) => apiKeyLive(this.host.env, kid), passwordOk: (pw) => this.passwordOk(t!, pw, open.client) },
      );
      if (access.kind === 'respond') return access.response;
      const where = `tunnel ${t!.slug} (port ${t!.target_port} on its host)`;
      await this.online(where);
      return await relayHttp(this.mux, request, {
        target: { kind: 'host_tcp', port: t!.target_port },
        path: open.path,
        websocket: open.websocket,
        tags: { tunnel_id: t!.id, credential_id: access.credential_id, kind: open.websocket ? 'websocket' : 'http' },
        maxBody: open.max_body,
        where,
        // In a password tunnel HTTP Basic is the tunnel's password, not the app's.
        dropHeaders: t!.auth_mode === 'password' && /^basic\s/i.test(request.headers.get('authorization') ?? '') ? ['authorization'] : [],
        rewriteHead: open.base ? (h) => prefixHead(h, open.base, open.host) : undefined,
      });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      // The agent's socket went as the connection opened: for a tunnel that is its host being offline.
      const e = err.code === 'AGENT_UNAVAILABLE' ? new ApiError('HOST_OFFLINE', `${err.message} (the host went offline)`, { 'retry-after': '10' }) : err;
      return previewError(e, request, open.request_id);
    }
  }

  private async login(request: Request, open: LoginOpen): Promise<Response> {
    try {
      const t = await this.entry(open);
      if (!t || !t.enabled || t.auth_mode !== 'password' || !t.password_hash || !t.password_version) throw tunnelNotFound(open.slug);
      const next = /^\/(?![/\\])/.test(open.next) && !/[\r\n]/.test(open.next) ? open.next : '/';
      if (!(await this.passwordOk(t, open.password, open.client))) {
        const page = loginPage(t.slug, open.base, next, 'That password is not right.');
        return page;
      }
      const cookie = await mintTunnelCookie(this.host.env, t.id, { kind: 'password', v: t.password_version });
      const headers = new Headers({ location: open.base + next, 'cache-control': 'no-store' });
      headers.append('set-cookie', tunnelCookie(cookie.token, open.base, TUNNEL_COOKIE_TTL_S, open.https));
      return new Response(null, { status: 303, headers });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      return previewError(err, request, open.request_id);
    }
  }

  /** Checks a password against the tunnel's hash, counting wrong ones (429 past the limit, without checking). */
  private async passwordOk(t: TunnelEntry, password: string, client: string): Promise<boolean> {
    if (!t.password_hash) return false;
    const digest = await sha256(`${t.password_version}\n${password}`);
    if (this.accepted.get(t.id)?.has(digest)) return true;
    let limit = this.failures.get(t.id);
    if (!limit) this.failures.set(t.id, (limit = new FailureLimit()));
    const wait = limit.retryAfter(client);
    if (wait > 0) throw new ApiError('RATE_LIMITED', `too many wrong passwords for tunnel ${t.slug}; try again in ${wait} s`, { 'retry-after': String(wait) });
    if (await checkPassword(password, t.password_hash)) {
      let ok = this.accepted.get(t.id);
      if (!ok) this.accepted.set(t.id, (ok = new Set()));
      if (ok.size < 64) ok.add(digest);
      return true;
    }
    limit.failed(client);
    return false;
  }

  /** Returns once the host's agent is attached; a 503 saying why otherwise. */
  private async online(where: string): Promise<void> {
    if (this.host.connected()) return;
    const gone = await this.host.gone();
    if (gone) throw new ApiError('HOST_OFFLINE', `${where} cannot be reached: ${gone}`);
    await this.host.whenAttached(AGENT_WAIT_MS);
    if (!this.host.connected()) throw new ApiError('HOST_OFFLINE', `${where} cannot be reached: the host is offline (its agent is not connected)`, { 'retry-after': '10' });
  }
}

async function sha256(s: string): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(s)));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}
