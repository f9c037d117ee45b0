/** Who is calling: the organization and the scope an API key or JWT grants. */
export interface Principal {
  kind: 'api_key' | 'jwt';
  org_id: string;
  /** API key id, or the JWT's `sub`; shown as owner_user_id on what it creates. */
  subject: string;
  /**
   * The API key behind the request: the key itself, or the key a tenant JWT
   * was minted from; null for JWTs not minted from a key. Everything minted
   * or opened with this request records it, so revoking the key ends it
   * (worker/credentials/revocation.ts).
   */
  credential_id: string | null;
  /** Workspaces the credential may touch; null means all of the organization's. */
  workspace_ids: string[] | null;
  /** Projects the credential may touch; null means all (within the allowed workspaces). */
  project_ids: string[] | null;
  mode: 'live' | 'test';
  /** The workspace the general rate limit is counted against. */
  rate_scope: string;
  /** The organization's per-minute limit when the operator set one; null is the documented 300. */
  rate_limit: number | null;
}

/** True when the principal may act on a resource owned by this workspace and project. */
export function inScope(p: Pick<Principal, 'workspace_ids' | 'project_ids'>, workspaceId: string, projectId: string): boolean {
  if (p.workspace_ids && !p.workspace_ids.includes(workspaceId)) return false;
  if (p.project_ids && !p.project_ids.includes(projectId)) return false;
  return true;
}
