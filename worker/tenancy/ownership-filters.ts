/**
 * Filters of list endpoints by ownership: workspace_id / workspace_slug,
 * project_id / project_slug, external_workspace_id, external_user_id,
 * external_project_id — always within the caller's organization and the
 * credential's workspace/project scope. Returned both as a SQL fragment with
 * `?` parameters (for D1 prepared statements) and as a drizzle `SQL`.
 */
import { sql, type SQL } from 'drizzle-orm';
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import type { Env } from '../env.ts';
import { validate } from '../http/body.ts';
import type { Principal } from '../middleware/principal.ts';
import { Slug } from '../../schema/api-tenancy.ts';

const FilterQuery = z.object({
  workspace_id: z.uuid().optional(),
  workspace_slug: Slug.optional(),
  project_id: z.uuid().optional(),
  project_slug: Slug.optional(),
  external_workspace_id: z.string().min(1).max(255).optional(),
  external_user_id: z.string().min(1).max(255).optional(),
  external_project_id: z.string().min(1).max(255).optional(),
});
type FilterName = keyof z.infer<typeof FilterQuery>;

/** Column names of the listed table; null when the table has no such column (filtering on it is then a 400). */
export interface FilterColumns {
  org_id: string;
  workspace_id: string;
  project_id: string | null;
  external_workspace_id: string | null;
  external_user_id: string | null;
  external_project_id: string | null;
}

const RESOURCE_COLUMNS: FilterColumns = {
  org_id: 'org_id',
  workspace_id: 'workspace_id',
  project_id: 'project_id',
  external_workspace_id: 'external_workspace_id',
  external_user_id: 'external_user_id',
  external_project_id: 'external_project_id',
};

export interface OwnershipFilter {
  /** e.g. `org_id = ? AND workspace_id IN (SELECT id FROM workspaces WHERE org_id = ? AND slug = ?)`; never empty. */
  sql: string;
  /** The values of the `?` placeholders of `sql`, in order. */
  args: string[];
  /** The same condition for drizzle's `.where()`. */
  drizzle: SQL;
}

interface Clause {
  text: string;
  params: string[];
}

/**
 * Builds the ownership filter of a list request. Naming a workspace_id or
 * project_id outside the credential's scope is 403; slugs that match nothing
 * (or only out-of-scope rows) simply yield an empty list.
 */
export function ownershipFilters(
  _env: Env,
  p: Principal,
  query: URLSearchParams,
  columns: Partial<FilterColumns> & { alias?: string } = {},
): OwnershipFilter {
  const { alias, ...overrides } = columns;
  const cols: FilterColumns = { ...RESOURCE_COLUMNS, ...overrides };
  const raw: Record<string, string | undefined> = {};
  for (const name of Object.keys(FilterQuery.shape)) raw[name] = query.get(name) ?? undefined;
  const q = validate(FilterQuery, raw, 'query');

  const col = (name: keyof FilterColumns, filter: FilterName | null): string => {
    const c = cols[name];
    if (c === null) throw new ApiError('VALIDATION_FAILED', `${filter ?? name} is not a filter of this list`);
    return alias ? `${alias}.${c}` : c;
  };
  const clauses: Clause[] = [{ text: `${col('org_id', null)} = ?`, params: [p.org_id] }];

  if (q.workspace_id) {
    if (p.workspace_ids && !p.workspace_ids.includes(q.workspace_id)) throw new ApiError('FORBIDDEN', `this credential is not allowed to list workspace ${q.workspace_id}`);
    clauses.push({ text: `${col('workspace_id', 'workspace_id')} = ?`, params: [q.workspace_id] });
  }
  if (q.workspace_slug) {
    clauses.push({ text: `${col('workspace_id', 'workspace_slug')} IN (SELECT id FROM workspaces WHERE org_id = ? AND slug = ?)`, params: [p.org_id, q.workspace_slug] });
  }
  if (q.project_id) {
    if (p.project_ids && !p.project_ids.includes(q.project_id)) throw new ApiError('FORBIDDEN', `this credential is not allowed to list project ${q.project_id}`);
    clauses.push({ text: `${col('project_id', 'project_id')} = ?`, params: [q.project_id] });
  }
  if (q.project_slug) {
    clauses.push({ text: `${col('project_id', 'project_slug')} IN (SELECT id FROM projects WHERE org_id = ? AND slug = ?)`, params: [p.org_id, q.project_slug] });
  }
  for (const name of ['external_workspace_id', 'external_user_id', 'external_project_id'] as const) {
    const v = q[name];
    if (v !== undefined) clauses.push({ text: `${col(name, name)} = ?`, params: [v] });
  }
  // The credential's scope applies whatever the caller asked for.
  if (p.workspace_ids) clauses.push(inList(col('workspace_id', null), p.workspace_ids));
  if (p.project_ids) clauses.push(inList(col('project_id', null), p.project_ids));

  const where = clauses.map((c) => c.text).join(' AND ');
  const args = clauses.flatMap((c) => c.params);
  return { sql: where, args, drizzle: toDrizzle(where, args) };
}

const inList = (column: string, ids: string[]): Clause => ({ text: `${column} IN (${ids.map(() => '?').join(', ')})`, params: ids });

/** Interleaves the `?` placeholders of our own fragment with bound parameters (column names are ours, never user input). */
function toDrizzle(where: string, params: string[]): SQL {
  const parts = where.split('?');
  const chunks: SQL[] = [];
  parts.forEach((part, i) => {
    chunks.push(sql.raw(part));
    if (i < params.length) chunks.push(sql`${params[i]}`);
  });
  return sql.join(chunks, sql.raw(''));
}
