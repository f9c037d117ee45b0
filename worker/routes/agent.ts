import type { RouteDef } from '../router.ts';

export const AGENT_ROUTES: RouteDef[] = [];
