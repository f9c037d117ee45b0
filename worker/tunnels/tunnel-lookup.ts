/**
 * The tunnel a slug names, remembered by this isolate for a few seconds: most
 * tunnel requests read nothing from D1. A slug deleted and taken by another
 * tunnel within that time is refused by the old tunnel's host object (it
 * checks the slug), so a stale entry is a short 404, never another host.
 */
import type { Env } from '../env.ts';

export interface TunnelTarget {
  id: string;
  org_id: string;
  host_id: string;
}

const TTL_MS = 10_000;
const MAX = 10_000;
const cache = new Map<string, { t: TunnelTarget; at: number }>();

export async function tunnelBySlug(env: Env, slug: string): Promise<TunnelTarget | null> {
  const hit = cache.get(slug);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.t;
  const t = await env.DB.prepare('SELECT id, org_id, host_id FROM tunnels WHERE slug = ?').bind(slug).first<TunnelTarget>();
  cache.delete(slug);
  if (t) {
    if (cache.size >= MAX) cache.delete(cache.keys().next().value!);
    cache.set(slug, { t, at: Date.now() });
  }
  return t;
}

/** Forgets a slug at once (this isolate deleted or renamed its tunnel). */
export const forgetTunnelSlug = (slug: string): void => void cache.delete(slug);
