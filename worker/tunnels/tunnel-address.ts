/**
 * Where a tunnel answers. Every tunnel has two addresses:
 *  - a path on the API's own host, `/t/{slug}/…` (the spec's `public_url`): the
 *    prefix is taken off before the request reaches the app, which is told it
 *    in X-Forwarded-Prefix, and its redirects and cookie paths are put back
 *    under it (tunnel-prefix.ts);
 *  - a host of its own, `{slug}.t.{PREVIEW_DOMAIN}` (`host_url`), for apps that
 *    cannot live under a prefix — and the one to use for anything private,
 *    since every path tunnel shares the API's origin in a browser.
 */
import type { Env } from '../env.ts';
import { previewDomain, scheme } from '../computers/urls.ts';

/** A tunnel's slug: a lower-case DNS label (one label of its host name). */
export const TUNNEL_SLUG_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
export const TUNNEL_PATH_PREFIX = '/t/';

/** The slug a Host header names (`{slug}.t.{PREVIEW_DOMAIN}`), or null when it is not a tunnel host. */
export function tunnelFromHost(host: string | null, env: Env): string | null {
  if (!host) return null;
  const suffix = `.t.${previewDomain(env)}`;
  const h = host.toLowerCase();
  if (!h.endsWith(suffix)) return null;
  const slug = h.slice(0, -suffix.length);
  return TUNNEL_SLUG_RE.test(slug) ? slug : null;
}

export interface TunnelPath {
  slug: string;
  /** `/t/{slug}`: what the app's URLs are put back under. */
  prefix: string;
  /** The path and query the app sees (`/` at least); null for the bare `/t/{slug}`, which is sent on to `/t/{slug}/`. */
  rest: string | null;
}

/** The tunnel a path on the API host names (`/t/{slug}`, `/t/{slug}/…`), or null. */
export function tunnelFromPath(url: URL): TunnelPath | null {
  if (!url.pathname.startsWith(TUNNEL_PATH_PREFIX)) return null;
  const after = url.pathname.slice(TUNNEL_PATH_PREFIX.length);
  const cut = after.indexOf('/');
  const slug = (cut < 0 ? after : after.slice(0, cut)).toLowerCase();
  if (!TUNNEL_SLUG_RE.test(slug)) return null;
  const prefix = `${TUNNEL_PATH_PREFIX}${slug}`;
  return { slug, prefix, rest: cut < 0 ? null : after.slice(cut) + url.search };
}

/** The tunnel's address on the API host: `https://api.example.com/t/my-app`. */
export const tunnelPathUrl = (apiOrigin: string, slug: string): string => `${apiOrigin}${TUNNEL_PATH_PREFIX}${slug}`;

/** The tunnel's own host: `https://my-app.t.example.com`. */
export const tunnelHostUrl = (env: Env, slug: string): string => `${scheme(env)}://${slug}.t.${previewDomain(env)}`;
