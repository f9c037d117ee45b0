/**
 * Requests are served by what their Host names before the API sees them:
 * preview hosts of exposed ports (`{port}-{slug}.sandbox.{PREVIEW_DOMAIN}`),
 * and whatever else registers here (computers' own hosts, tunnel hosts).
 * Everything else is the API.
 */
import type { Env } from '../env.ts';
import { parsePreviewHost } from '../preview/preview-host.ts';
import { handlePreview } from '../preview/preview.ts';
import { desktopHostRoute } from '../desktop/desktop-host.ts';
import { TUNNEL_PATH_PREFIX, tunnelFromHost, tunnelFromPath } from '../tunnels/tunnel-address.ts';
import { handleTunnel } from '../tunnels/tunnel.ts';

export interface HostRoute<M> {
  /** What the host name means to this route, or null when it is not its. */
  match(host: string | null, env: Env): M | null;
  handle(request: Request, env: Env, ctx: ExecutionContext, m: M): Promise<Response>;
}

const route = <M>(r: HostRoute<M>): HostRoute<unknown> => r as HostRoute<unknown>;

export const HOST_ROUTES: HostRoute<unknown>[] = [
  route({ match: parsePreviewHost, handle: (request, env, _ctx, target) => handlePreview(request, env, target) }),
  route({ match: tunnelFromHost, handle: (request, env, _ctx, slug) => handleTunnel(request, env, { slug, base: '', rest: pathOf(request) }) }),
  // A computer's own host: its desktop page and VNC socket.
  route(desktopHostRoute),
];

const pathOf = (request: Request): string => {
  const url = new URL(request.url);
  return url.pathname + url.search;
};

/**
 * The response of the host route the request's Host belongs to; on the API's
 * own host, of a tunnel's path (`/t/{slug}/…`); null for the API.
 */
export function dispatchHost(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> | null {
  const host = request.headers.get('host') ?? new URL(request.url).host;
  for (const r of HOST_ROUTES) {
    const m = r.match(host, env);
    if (m !== null) return r.handle(request, env, ctx, m);
  }
  const url = new URL(request.url);
  if (url.pathname.startsWith(TUNNEL_PATH_PREFIX)) {
    const hit = tunnelFromPath(url);
    if (hit) return handleTunnel(request, env, { slug: hit.slug, base: hit.prefix, rest: hit.rest });
  }
  return null;
}
