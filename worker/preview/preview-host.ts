/**
 * Preview host names: `{port}-{slug}.sandbox.{PREVIEW_DOMAIN}` for an exposed
 * port, `{slug}.sandbox.{PREVIEW_DOMAIN}` for port 80. Anything else is not a
 * preview host (the API, or another host dispatch).
 */
import type { Env } from '../env.ts';
import { previewDomain } from '../computers/urls.ts';

export interface PreviewTarget {
  slug: string;
  port: number;
}

const LABEL = /^(?:([1-9][0-9]{0,4})-)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)$/;

/** The port and computer slug a Host header names, or null when it is not a preview host. */
export function parsePreviewHost(host: string | null, env: Env): PreviewTarget | null {
  if (!host) return null;
  const h = host.toLowerCase();
  const suffix = `.sandbox.${previewDomain(env)}`;
  if (!h.endsWith(suffix)) return null;
  const label = h.slice(0, -suffix.length);
  const m = LABEL.exec(label);
  if (!m) return null;
  const port = m[1] === undefined ? 80 : Number(m[1]);
  if (port > 65535) return null;
  // A slug alone could itself start with digits and a dash ("3000-x"): the port reading wins, as clients build it.
  return { slug: m[2], port };
}
