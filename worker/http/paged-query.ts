/** One page of rows plus the total count, read in a single D1 batch (one round trip, one consistent snapshot). */
import type { Env } from '../env.ts';
import type { Page } from './pagination.ts';

/**
 * Runs `SELECT COUNT(*) FROM <from> WHERE <where>` and
 * `SELECT <columns> FROM <from> WHERE <where> ORDER BY <order> LIMIT/OFFSET`.
 * All fragments are the caller's own SQL; only `args` carry request values.
 */
export async function pagedQuery<T>(
  env: Env,
  // orderBy should end in a unique column (rowid is insertion order) so pages never overlap.
  q: { columns: string; from: string; where?: string; args?: unknown[]; orderBy: string },
  page: Page,
): Promise<{ rows: T[]; total: number }> {
  const where = q.where ? ` WHERE ${q.where}` : '';
  const args = q.args ?? [];
  const [count, rows] = await env.DB.batch([
    env.DB.prepare(`SELECT COUNT(*) AS n FROM ${q.from}${where}`).bind(...args),
    env.DB.prepare(`SELECT ${q.columns} FROM ${q.from}${where} ORDER BY ${q.orderBy} LIMIT ? OFFSET ?`).bind(...args, page.page_size, page.offset),
  ]);
  return { rows: rows.results as T[], total: (count.results[0] as { n: number }).n };
}
