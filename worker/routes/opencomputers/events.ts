/**
 * Host events (spec/05, Host event stream): Server-Sent Events in the page's
 * shape — `event: <type>`, `data: {"type", "host_id", "data", "timestamp"}` —
 * each with an `id:`, resumable with Last-Event-ID, heartbeats every 15 s;
 * one host's, or all the tenant's hosts' (all-host-events.ts).
 */
import { route, type RouteDef } from '../../router.ts';
import { allHostEvents } from './all-host-events.ts';
import { hostOpRequest, hostStub, loadTenantHost, refOf } from './host-access.ts';
import { OC_BASE } from './hosts.ts';

export const EVENT_ROUTES: RouteDef[] = [
  // Before `hosts/:id`, which would take `events` for an id.
  route({
    method: 'GET',
    path: `${OC_BASE}/hosts/events`,
    auth: 'tenant',
    handler: async (c) => allHostEvents(c),
  }),
  route({
    method: 'GET',
    path: `${OC_BASE}/hosts/:id/events`,
    auth: 'tenant',
    handler: async (c) => {
      const host = await loadTenantHost(c.env, c.principal, c.params.id);
      return hostStub(c.env, host.id).fetch(hostOpRequest(c, refOf(host), 'events'));
    },
  }),
];
