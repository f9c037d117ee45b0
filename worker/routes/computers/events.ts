/**
 * A computer's events (issue 11), two ways on one path:
 *  - GET …/events is its part of the organization's event log as Server-Sent
 *    Events — status changes with their reasons, exec and terminal sessions,
 *    snapshots — with ids, Last-Event-ID resume and heartbeats;
 *  - the same GET with `Upgrade: websocket` (subprotocol `miosa-events-v1`)
 *    streams what happens inside the running computer: `?subscribe=process,
 *    file,idle,window,clipboard` (`paths=` for file, `idle_threshold_sec=`
 *    for idle; window and clipboard from the computer's desktop).
 * Credentials: the bearer header, a `bearer.<key>` subprotocol, or a stream
 * token (`?auth=`, from POST …/stream-token) for browsers.
 */
import { z } from 'zod';
import { FsPath, type WatchProducers } from '../../../schema/guest.ts';
import { validate } from '../../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { computerStub, loadComputer, requireComputerId } from '../../computers/access.ts';
import { openEventStream, typesOf } from '../../events/open-stream.ts';
import { offeredProtocols, socketCaller } from '../../computers/socket-auth.ts';
import { CLIENT_OPEN_HEADER, encodeClientOpen } from '../../../durable-objects/exec/client-sockets.ts';
import { DESKTOP_PRODUCERS, EVENTS_SUBPROTOCOL, PRODUCERS } from '../../../durable-objects/events/watch-sockets.ts';

/** Watched when `file` is asked for without `paths`. */
export const DEFAULT_WATCH_PATHS = ['/home/user', '/workspace'];
const list = (s: string) => s.split(',').map((x) => x.trim());

const EventsQuery = z.object({
  subscribe: z.string().min(1, 'name at least one producer').transform(list).pipe(z.array(z.string().min(1).max(64)).max(16)),
  paths: z
    .string()
    .transform(list)
    .pipe(z.array(FsPath.refine((p) => p.startsWith('/'), 'paths must be absolute')).min(1).max(16))
    .optional(),
  idle_threshold_sec: z.coerce.number().int().min(1).max(86_400).default(30),
});

/** The watch a query asks for, and what it names that no watch can give. */
function watchOf(q: URLSearchParams) {
  const v = validate(
    EventsQuery,
    { subscribe: q.get('subscribe') ?? undefined, paths: q.get('paths') ?? undefined, idle_threshold_sec: q.get('idle_threshold_sec') ?? undefined },
    'query',
  );
  const names = new Set(v.subscribe);
  const producers: WatchProducers = {
    ...(names.has('process') && { process: {} }),
    ...(names.has('file') && { file: { paths: v.paths ?? DEFAULT_WATCH_PATHS } }),
    ...(names.has('idle') && { idle: { threshold_s: v.idle_threshold_sec } }),
  };
  const known: readonly string[] = PRODUCERS;
  return { producers, unknown: [...names].filter((n) => !known.includes(n)), desktop: DESKTOP_PRODUCERS.filter((p) => names.has(p)) };
}

async function socket(c: RouteContext, id: string): Promise<Response> {
  const watch = watchOf(c.query);
  const { caller } = await socketCaller(c, id);
  const subprotocol = offeredProtocols(c.request).includes(EVENTS_SUBPROTOCOL) ? EVENTS_SUBPROTOCOL : null;
  const open = encodeClientOpen({ kind: 'events', caller, open: { ...watch, subprotocol } });
  const headers = new Headers({ upgrade: 'websocket', 'x-request-id': c.requestId, [CLIENT_OPEN_HEADER]: open });
  return computerStub(c.env, id).fetch(new Request(c.url.toString(), { headers }));
}

export const COMPUTER_EVENT_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/events',
    auth: 'self',
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      if (c.request.headers.get('upgrade')?.toLowerCase() === 'websocket') return socket(c, id);
      const { caller } = await socketCaller(c, id);
      const row = await loadComputer(c.env, caller, id);
      return openEventStream(
        c,
        c.env,
        row.org_id,
        { refs: { computer_id: row.id }, scope_workspace_ids: caller.workspace_ids, scope_project_ids: caller.project_ids, types: typesOf(c.query) },
        { credential_id: caller.credential_id },
      );
    },
  }),
];
