import type { RouteDef } from '../router.ts';

export const AUTH_ROUTES: RouteDef[] = [];
