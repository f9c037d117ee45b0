/**
 * OpenComputers tunnels (spec/05, Tunnels; docs/relay.md): a port on a
 * tenant's own host reached at `/t/{slug}` on the API host and at
 * `{slug}.t.{PREVIEW_DOMAIN}`, through the host-mode agent's relay.
 */
import { z } from 'zod';
import { PortNumber } from './api.ts';

export const TUNNEL_AUTH_MODES = ['public', 'tenant_only', 'password'] as const;
export const TunnelAuthMode = z.enum(TUNNEL_AUTH_MODES);
export type TunnelAuthMode = z.infer<typeof TunnelAuthMode>;

/** A lower-case DNS label, unique across the deployment (one label of the tunnel's own host name). */
export const TunnelSlug = z
  .string()
  .max(63)
  .regex(/^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'must be a lower-case DNS label: letters, digits and inner dashes, at most 63');

/** Stored only as a hash, never returned. */
export const TunnelPassword = z.string().min(8, 'must be at least 8 characters').max(1024);

export const TunnelCreate = z
  .object({
    target_port: PortNumber,
    auth_mode: TunnelAuthMode.default('public'),
    slug: TunnelSlug.optional(),
    password: TunnelPassword.optional(),
    enabled: z.boolean().default(true),
  })
  .refine((b) => b.auth_mode !== 'password' || b.password !== undefined, { message: 'auth_mode password needs a password', path: ['password'] })
  .refine((b) => b.auth_mode === 'password' || b.password === undefined, { message: 'a password is only for auth_mode password', path: ['password'] });

export const TunnelUpdate = z
  .object({
    target_port: PortNumber.optional(),
    auth_mode: TunnelAuthMode.optional(),
    password: TunnelPassword.optional(),
    enabled: z.boolean().optional(),
  })
  .refine((b) => Object.values(b).some((v) => v !== undefined), 'give target_port, auth_mode, password or enabled');

/** Where a minted link of a tenant_only tunnel lands (default `/`). */
export const TunnelLink = z.object({ path: z.string().regex(/^\/(?![/\\])[^\s]*$/, 'must be a path in the tunnel, like /dashboard?tab=1').max(2048).optional() });

/** A tunnel as the API shows it. */
export interface Tunnel {
  id: string;
  host_id: string;
  slug: string;
  target_port: number;
  auth_mode: TunnelAuthMode;
  /** `https://<api host>/t/{slug}` (spec/05). */
  public_url: string;
  /** `https://{slug}.t.{PREVIEW_DOMAIN}`: the same tunnel on a host of its own. */
  host_url: string;
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

/** A tunnel's row (schema/migrations/0005_relay.sql). */
export interface TunnelRow {
  id: string;
  org_id: string;
  host_id: string;
  slug: string;
  target_port: number;
  auth_mode: TunnelAuthMode;
  password_hash: string | null;
  enabled: number;
  created_at: string;
  updated_at: string;
}
