/** Finding a caller's computer: a bad id is a 400, anything not theirs a 404 that says nothing more. */
import { ApiError } from '../../schema/errors.ts';
import type { ComputerRow } from '../../schema/db.ts';
import type { Env } from '../env.ts';
import { looksLikeId } from '../http/ids.ts';
import { inScope, type Principal } from '../middleware/principal.ts';
import type { Caller } from '../../durable-objects/computer/record.ts';

interface RawComputerRow extends Omit<ComputerRow, 'selected_apps' | 'settings' | 'ai_config' | 'metadata'> {
  selected_apps: string;
  settings: string;
  ai_config: string;
  metadata: string;
}

export function parseRow(r: RawComputerRow): ComputerRow {
  return {
    ...r,
    selected_apps: JSON.parse(r.selected_apps),
    settings: JSON.parse(r.settings),
    ai_config: JSON.parse(r.ai_config),
    metadata: JSON.parse(r.metadata),
  };
}

/** The id in canonical (lower-case) form; 400 INVALID_ID only for text that cannot be an id (see looksLikeId). */
export function requireComputerId(id: string): string {
  if (!looksLikeId(id)) throw new ApiError('INVALID_ID', 'invalid computer id');
  return id.toLowerCase();
}

/**
 * The computer row if the principal may use it. Another organization's
 * computer is a 404 like a missing one; one of the caller's own organization
 * outside the credential's workspace/project scope is the page's 403.
 */
export async function loadComputer(env: Env, p: Pick<Principal, 'org_id' | 'workspace_ids' | 'project_ids'>, rawId: string): Promise<ComputerRow> {
  const id = requireComputerId(rawId);
  const row = await env.DB.prepare('SELECT * FROM computers WHERE id = ? AND org_id = ?').bind(id, p.org_id).first<RawComputerRow>();
  if (!row) throw new ApiError('NOT_FOUND', 'computer not found');
  if (!inScope(p, row.workspace_id, row.project_id)) throw new ApiError('FORBIDDEN', 'not a member of this computer');
  return parseRow(row);
}

export const callerOf = (p: Principal): Caller => ({
  org_id: p.org_id,
  workspace_ids: p.workspace_ids,
  project_ids: p.project_ids,
  credential_id: p.credential_id,
});

export const computerStub = (env: Env, id: string) => env.COMPUTER.get(env.COMPUTER.idFromName(id));
