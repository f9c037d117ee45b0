/** Liveness: answers without credentials so load balancers and scripts can poll it. */
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';

export const HEALTH_ROUTES: RouteDef[] = [
  route({ method: 'GET', path: '/api/v1/health', auth: 'public', handler: async () => json({ status: 'ok' }) }),
];
