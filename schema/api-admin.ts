/**
 * Request bodies of the operator (admin) API and of POST /auth/token. Field
 * errors become 400s naming the field (worker/http/body.ts).
 */
import { z } from 'zod';
import { DisplayName } from './text.ts';
import { StringMap } from './string-map.ts';

const Name = DisplayName;
/** Organization slugs are global, lower-case and URL-safe. */
const OrgSlug = z.string().regex(/^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/, 'must be 1-64 lower-case letters, digits or "-", not starting or ending with "-"');
/** Credits are shown with up to 4 decimals; larger magnitudes are surely typos. */
const Credits = z.number().finite().min(-1e12).max(1e12);
const RateLimit = z.number().int().min(1).max(1_000_000);
const IdList = z.array(z.uuid()).min(1).max(100);

export const CreateOrganization = z.object({
  name: Name,
  slug: OrgSlug.optional(),
  credits: Credits.min(0).default(0),
  rate_limit_per_minute: RateLimit.nullable().optional(),
});
export type CreateOrganization = z.infer<typeof CreateOrganization>;

export const UpdateOrganization = z
  .object({ name: Name.optional(), rate_limit_per_minute: RateLimit.nullable().optional() })
  .refine((b) => b.name !== undefined || b.rate_limit_per_minute !== undefined, 'name or rate_limit_per_minute is required');

export const CreateApiKey = z.object({
  name: Name.default('API key'),
  mode: z.enum(['live', 'test']).default('live'),
  // Absent or null: every workspace / project of the organization.
  workspace_ids: IdList.nullable().optional(),
  project_ids: IdList.nullable().optional(),
});
export type CreateApiKey = z.infer<typeof CreateApiKey>;

export const AdjustCredits = z.object({
  amount: Credits.refine((n) => n !== 0, 'must not be zero'),
  reason: z.string().trim().min(1).max(500),
});

/** Region slugs, as fleet hosts and tenant hosts carry them. */
export const HostRegion = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be lower-case letters, digits or "-"');
export const RegisterHost = z.object({
  name: Name,
  region: HostRegion,
  labels: StringMap.default({}),
});

export const IssueToken = z.object({
  // May instead come as `Authorization: Bearer msk_…`.
  api_key: z.string().min(1).max(256).optional(),
  ttl_seconds: z.number().int().min(60).max(3600).optional(),
});
