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

export interface HostRoute<M> {
  /** What the host name means to this route, or null when it is not its. */
  match(host: string | null, env: Env): M | null;
  handle(request: Request, env: Env, ctx: ExecutionContext, m: M): Promise<Response>;
}

const route = <M>(r: HostRoute<M>): HostRoute<unknown> => r as HostRoute<unknown>;

export const HOST_ROUTES: HostRoute<unknown>[] = [
  route({ match: parsePreviewHost, handle: (request, env, _ctx, target) => handlePreview(request, env, target) }),
  // A computer's own host: its desktop page and VNC socket.
  route(desktopHostRoute),
];

/** The response of the host route the request's Host belongs to, or null for the API. */
export function dispatchHost(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> | null {
  const host = request.headers.get('host') ?? new URL(request.url).host;
  for (const r of HOST_ROUTES) {
    const m = r.match(host, env);
    if (m !== null) return r.handle(request, env, ctx, m);
  }
  return null;
}
