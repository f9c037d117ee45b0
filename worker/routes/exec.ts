import type { RouteDef } from '../router.ts';

export const EXEC_ROUTES: RouteDef[] = [];
