/**
 * The computer a preview host's slug names. Slugs never change and are never
 * reused (they end with the start of the computer's id), so this isolate
 * remembers them: most preview requests read nothing from D1. A computer
 * deleted meanwhile is answered by its object, which no longer has it.
 */
import type { Env } from '../env.ts';

export interface PreviewComputer {
  id: string;
  org_id: string;
  workspace_id: string;
  project_id: string;
  slug: string;
}

const TTL_MS = 60_000;
const MAX = 10_000;
const cache = new Map<string, { c: PreviewComputer; at: number }>();

export async function computerBySlug(env: Env, slug: string): Promise<PreviewComputer | null> {
  const hit = cache.get(slug);
  if (hit && Date.now() - hit.at < TTL_MS) return hit.c;
  const c = await env.DB.prepare('SELECT id, org_id, workspace_id, project_id, slug FROM computers WHERE slug = ?').bind(slug).first<PreviewComputer>();
  cache.delete(slug);
  if (c) {
    if (cache.size >= MAX) cache.delete(cache.keys().next().value!);
    cache.set(slug, { c, at: Date.now() });
  }
  return c;
}
