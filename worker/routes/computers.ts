import type { RouteDef } from '../router.ts';

export const COMPUTER_ROUTES: RouteDef[] = [];
