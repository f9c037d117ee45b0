/**
 * Where a computer is reached on the web. Every name is built from the
 * computer's `slug` (unique: `<name>-<first 8 of its id>`):
 *  - preview hosts `{port}-{slug}.sandbox.{PREVIEW_DOMAIN}` serve its exposed
 *    ports, and `{slug}.sandbox.{PREVIEW_DOMAIN}` (sandbox_url) its port 80;
 *  - its own host `{slug}.{COMPUTER_DOMAIN}` serves the desktop.
 * URL_SCHEME is https in production and http under `npm start`, where both
 * domains carry the dev server's port (`localhost:8787`).
 */
import type { ComputerRow } from '../../schema/db.ts';
import type { Env } from '../env.ts';

export const scheme = (env: Env): string => (env.URL_SCHEME === 'http' ? 'http' : 'https');

/** The domain preview hosts live under (`preview_domain` on the computer object). */
export const previewDomain = (env: Env): string => (env.PREVIEW_DOMAIN || env.COMPUTER_DOMAIN).toLowerCase();

/** The origin of an exposed port: `https://3000-my-app-1a2b3c4d.sandbox.example.com`. */
export const previewOrigin = (row: Pick<ComputerRow, 'slug'>, port: number, env: Env): string =>
  `${scheme(env)}://${port === 80 ? '' : `${port}-`}${row.slug}.sandbox.${previewDomain(env)}`;

/** The computer's own origin (desktop): `https://my-app-1a2b3c4d.computers.example.com`. */
export const computerOrigin = (row: Pick<ComputerRow, 'slug'>, env: Env): string => `${scheme(env)}://${row.slug}.${env.COMPUTER_DOMAIN}`;

/**
 * A computer's slug: its name's slug and the first 8 characters of its id,
 * led by a letter so `{port}-{slug}` cannot be read as another port, and
 * short enough for `{port}-{slug}` to stay one DNS label (63).
 */
export function computerSlug(nameSlug: string, id: string): string {
  const base = (/^[a-z]/.test(nameSlug) ? nameSlug : `c${nameSlug}`).slice(0, 40).replace(/-+$/, '');
  return `${base}-${id.slice(0, 8)}`;
}

/** The WebSocket form of an origin. */
export const wsOf = (origin: string): string => origin.replace(/^http/, 'ws');

/** The slug of the computer whose own host this is (`{slug}.{COMPUTER_DOMAIN}`); null when the host is not a computer's own. */
export function computerOfHost(host: string, env: Env): { slug: string } | null {
  const suffix = `.${env.COMPUTER_DOMAIN.toLowerCase()}`;
  const h = host.toLowerCase();
  if (!h.endsWith(suffix)) return null;
  // One DNS label of computerSlug's shape (…-<8 hex of the id>): no other host under the domain is a computer's.
  const label = h.slice(0, -suffix.length);
  return /^[a-z](?:[a-z0-9-]*)-[0-9a-f]{8}$/.test(label) ? { slug: label } : null;
}
