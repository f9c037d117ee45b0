import type { RouteDef } from '../router.ts';

export const ENV_VAR_ROUTES: RouteDef[] = [];
