/**
 * A computer's own host name: `<label>.<COMPUTER_DOMAIN>`. The desktop viewer
 * page and its VNC socket live there (desktop_url, vnc-credentials' ws_url),
 * as the computers page shows. URL_SCHEME is `https` in production; the local
 * stack serves `http` and puts its port into COMPUTER_DOMAIN
 * (`computers.localhost:8787`: browsers resolve *.localhost to loopback).
 */
import type { ComputerRow } from '../../schema/db.ts';
import type { Env } from '../env.ts';
import { hostLabel } from './view.ts';

type Named = Pick<ComputerRow, 'slug' | 'id'>;

export const computerOrigin = (row: Named, env: Env) => `${env.URL_SCHEME === 'http' ? 'http' : 'https'}://${hostLabel(row)}.${env.COMPUTER_DOMAIN}`;

/** The computer a request's Host names, as (slug, id prefix); null when the host is not a computer's own. */
export function computerOfHost(host: string, env: Env): { slug: string; idPrefix: string } | null {
  const suffix = `.${env.COMPUTER_DOMAIN.toLowerCase()}`;
  const h = host.toLowerCase();
  if (!h.endsWith(suffix)) return null;
  const m = /^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)-([0-9a-f]{8})$/.exec(h.slice(0, -suffix.length));
  return m ? { slug: m[1], idPrefix: m[2] } : null;
}
