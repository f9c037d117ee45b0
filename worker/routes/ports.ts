import type { RouteDef } from '../router.ts';

export const PORT_ROUTES: RouteDef[] = [];
