/**
 * A computer's system log (issue 11): boot, init, the guest agent, what its
 * host did with it (provisioning, apps, starts and stops) and saw (exits,
 * out-of-memory kills) — so an owner can tell why a computer misbehaves
 * without exec. Kept by the computer's object, so it reads the same whether
 * the computer runs, is stopped, or its host is away.
 *  - GET …/logs?lines=N (default 100, at most 10000) &since=<ISO time>
 *  - GET …/logs/stream: Server-Sent Events (`event: log`), the last `lines`
 *    (default 100) then live lines; Last-Event-ID resumes. EventSource may
 *    authenticate with a stream token in `?auth=`.
 */
import { z } from 'zod';
import { unwrap } from '../../../schema/errors.ts';
import { json } from '../../http/responses.ts';
import { validate } from '../../http/body.ts';
import { route, type RouteContext, type RouteDef } from '../../router.ts';
import { callerOf, computerStub, loadComputer, requireComputerId } from '../../computers/access.ts';
import { socketCaller } from '../../computers/socket-auth.ts';
import { CREDENTIAL_HEADER } from '../../../durable-objects/computer/system-log.ts';

export const MAX_LOG_LINES = 10_000;

const LogQuery = z.object({
  lines: z.coerce.number().int().min(0).max(MAX_LOG_LINES).default(100),
  since: z.iso.datetime({ offset: true }).optional(),
  last_event_id: z.string().regex(/^\d{1,15}$/, 'must be the id of a line (a number)').optional(),
});
const logQuery = (c: RouteContext) =>
  validate(LogQuery, { lines: c.query.get('lines') ?? undefined, since: c.query.get('since') ?? undefined, last_event_id: c.query.get('last_event_id') ?? undefined }, 'query');

export const LOG_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/logs',
    auth: 'tenant',
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const q = logQuery(c);
      const since = q.since === undefined ? undefined : new Date(q.since).toISOString();
      const r = unwrap(await computerStub(c.env, id).readLogs(callerOf(c.principal), q.lines, since));
      // The lines as text, and as entries with their ids and times.
      return json({ data: { computer_id: id, lines: r.lines.map((l) => l.line), entries: r.lines, last_id: r.last_id } });
    },
  }),
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/logs/stream',
    auth: 'self',
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const q = logQuery(c);
      const { caller, credential_id } = await socketCaller(c, id);
      await loadComputer(c.env, caller, id);
      const headers = new Headers({ 'x-request-id': c.requestId, 'x-hangar-log-tail': String(q.lines) });
      if (credential_id) headers.set(CREDENTIAL_HEADER, credential_id);
      const last = c.request.headers.get('last-event-id') ?? q.last_event_id;
      if (last) headers.set('last-event-id', last);
      return computerStub(c.env, id).fetch(new Request(c.url.toString(), { headers }));
    },
  }),
];
