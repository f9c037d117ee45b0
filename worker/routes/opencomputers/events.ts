/**
 * Host events (spec/05, Host event stream): Server-Sent Events in the page's
 * shape — `event: <type>`, `data: {"type", "host_id", "data", "timestamp"}` —
 * each with an `id:`, resumable with Last-Event-ID, heartbeats every 15 s.
 */
import { HOST_OP_HEADER } from '../../../durable-objects/host-object.ts';
import { route, type RouteDef } from '../../router.ts';
import { hostStub, loadTenantHost } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

export const EVENT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: `${OC_BASE}/hosts/:id/events`,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      const headers = new Headers({ [HOST_OP_HEADER]: 'events', 'x-hangar-host-id': host.id, 'x-hangar-org-id': host.org_id, 'x-request-id': c.requestId });
      const lastEventId = c.request.headers.get('last-event-id');
      if (lastEventId) headers.set('last-event-id', lastEventId);
      return hostStub(c.env, host.id).fetch(new Request(c.url.toString(), { headers }));
    },
  }),
];
