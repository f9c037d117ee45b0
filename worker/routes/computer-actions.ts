import type { RouteDef } from '../router.ts';

export const COMPUTER_ACTION_ROUTES: RouteDef[] = [];
