/** Whether an event belongs on a stream (pure; schema/events.ts says what each field means). */
import type { EventEnvelope, EventFilter } from '../../schema/events.ts';

/** `computer.stopped` matches itself; `computer.*` every type starting `computer.`; `*` everything. */
export function typeMatches(pattern: string, type: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('.*')) return type.startsWith(pattern.slice(0, -1));
  return pattern === type;
}

const within = (id: string | null, ids: string[] | null | undefined): boolean => ids === null || ids === undefined || (id !== null && ids.includes(id));

export function matches(f: EventFilter, e: EventEnvelope): boolean {
  // The credential's scope first: an event of no workspace is not for a credential bound to some.
  if (!within(e.workspace_id, f.scope_workspace_ids) || !within(e.project_id, f.scope_project_ids)) return false;
  if (!within(e.workspace_id, f.workspace_ids) || !within(e.project_id, f.project_ids)) return false;
  for (const [k, v] of Object.entries(f.refs)) if (e[k as `${string}_id`] !== v) return false;
  if (f.kind !== undefined && typeof e[`${f.kind}_id`] !== 'string') return false;
  if (f.types && !f.types.some((p) => typeMatches(p, e.type))) return false;
  return true;
}

/** A stable key per filter: streams with equal filters share one hub. */
export function filterKey(f: EventFilter): string {
  const sorted = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return JSON.stringify(sorted({ ...f, refs: sorted(f.refs) }));
}
