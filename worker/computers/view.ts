/** The computer object as the computers page shows it. */
import type { ComputerRow } from '../../schema/db.ts';
import type { Env } from '../env.ts';
import { diskGbOf } from './disk-size.ts';
import { computerOrigin, previewDomain, previewOrigin } from './urls.ts';

/** The host-name label of a computer: its slug, unique by construction (computerSlug). */
export const hostLabel = (row: Pick<ComputerRow, 'slug'>) => row.slug;

export function computerView(row: ComputerRow, env: Env) {
  return {
    id: row.id,
    tenant_id: row.org_id,
    owner_user_id: row.owner_user_id,
    name: row.name,
    slug: row.slug,
    template_type: row.template_type,
    size: row.size,
    vcpus: row.vcpus,
    memory_mb: row.memory_mb,
    isolation: row.isolation,
    memory_kept: !!row.memory_kept,
    disk_gb: diskGbOf(row),
    status: row.status,
    status_reason: row.status_reason ?? null,
    vm_id: row.status === 'provisioning' ? null : row.id,
    region: row.region,
    workspace_id: row.workspace_id,
    project_id: row.project_id,
    external_workspace_id: row.external_workspace_id,
    external_user_id: row.external_user_id,
    external_project_id: row.external_project_id,
    sandbox_url: previewOrigin(row, 80, env),
    desktop_url: `${computerOrigin(row, env)}/desktop/index.html`,
    /** Clients build `https://{port}-{slug}.sandbox.{preview_domain}` from it. */
    preview_domain: previewDomain(env),
    selected_apps: row.selected_apps,
    settings: row.settings,
    ai_config: row.ai_config,
    agent_session_id: row.agent_session_id,
    agent_status: null,
    resolution: row.resolution,
    auto_stop: row.auto_stop,
    ip_address: row.ip_address,
    metadata: row.metadata,
    visibility: row.visibility,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/**
 * Single computers are answered bare (the computers page) with the same object
 * under `data` too (the conventions page), so clients of either page work.
 */
export const computerResource = (row: ComputerRow, env: Env) => {
  const view = computerView(row, env);
  return { ...view, data: view };
};
