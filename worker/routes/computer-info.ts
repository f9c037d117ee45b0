import type { RouteDef } from '../router.ts';

export const COMPUTER_INFO_ROUTES: RouteDef[] = [];
