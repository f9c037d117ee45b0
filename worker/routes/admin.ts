/** The operator (admin) API under /api/v1/admin, authenticated with OPERATOR_TOKEN; see docs/admin-api.md. */
import type { RouteDef } from '../router.ts';
import { ADMIN_API_KEY_ROUTES } from './admin-api-keys.ts';
import { ADMIN_CREDIT_ROUTES } from './admin-credits.ts';
import { ADMIN_HOST_ROUTES } from './admin-hosts.ts';
import { ADMIN_ORGANIZATION_ROUTES } from './admin-organizations.ts';

export const ADMIN_ROUTES: RouteDef[] = [...ADMIN_ORGANIZATION_ROUTES, ...ADMIN_API_KEY_ROUTES, ...ADMIN_CREDIT_ROUTES, ...ADMIN_HOST_ROUTES];
