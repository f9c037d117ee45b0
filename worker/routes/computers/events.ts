/**
 * A computer's events (issue 11): GET …/events is its part of the
 * organization's event log as Server-Sent Events — status changes with their
 * reasons, exec and terminal sessions, snapshots — with ids, Last-Event-ID
 * resume and heartbeats. Credentials: the bearer header, or a stream token
 * (`?auth=`, from POST …/stream-token) for browsers' EventSource.
 */
import { route, type RouteDef } from '../../router.ts';
import { loadComputer, requireComputerId } from '../../computers/access.ts';
import { openEventStream, typesOf } from '../../events/open-stream.ts';
import { socketCaller } from '../terminal.ts';

export const COMPUTER_EVENT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/events',
    auth: 'self',
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const caller = await socketCaller(c, id);
      const row = await loadComputer(c.env, caller, id);
      return openEventStream(c, c.env, row.org_id, {
        refs: { computer_id: row.id },
        scope_workspace_ids: caller.workspace_ids,
        scope_project_ids: caller.project_ids,
        types: typesOf(c.query),
      });
    },
  }),
];
