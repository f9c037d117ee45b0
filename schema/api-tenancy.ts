/** Tenant-facing bodies about workspaces and projects, and the slug rule every ownership selector shares. */
import { z } from 'zod';
import { DisplayName } from './text.ts';

/** Workspace and project slugs as callers send them (e.g. "dr-smith-clinic"); stored as given. */
export const Slug = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'must be 1-64 letters, digits, ".", "_" or "-", starting with a letter or digit');

const Name = DisplayName;

export const CreateWorkspace = z.object({ name: Name, slug: Slug.optional() });

export const CreateProject = z.object({
  name: Name,
  slug: Slug.optional(),
  // The workspace it goes in: by id, by slug (auto-created, named workspace_name), else the default one.
  workspace_id: z.uuid().optional(),
  workspace_slug: Slug.optional(),
  workspace_name: Name.optional(),
});
