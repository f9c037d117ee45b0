import type { RouteDef } from '../router.ts';

export const ADMIN_ROUTES: RouteDef[] = [];
