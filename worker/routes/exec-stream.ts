/**
 * Streaming exec (spec/04-exec-stream.txt): POST starts the command at once and
 * answers 202 with a ticket; GET …/events?ticket= is its output as Server-Sent
 * Events, served by the computer's Durable Object. The ticket is the only
 * credential the GET takes, because EventSource cannot send headers; DELETE on
 * the same URL cancels the command.
 */
import { unwrap } from '../../schema/errors.ts';
import { ExecStreamBody } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { route, type RouteDef } from '../router.ts';
import { callerOf, computerStub, requireComputerId } from '../computers/access.ts';
import { clampTimeout } from './exec.ts';

export const EXEC_STREAM_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/exec/stream',
    auth: 'tenant',
    body: ExecStreamBody,
    handler: async (c) => {
      const id = requireComputerId(c.params.id);
      const t = unwrap(
        await computerStub(c.env, id).startStream(callerOf(c.principal), {
          command: c.body.command,
          timeout_s: clampTimeout(c.body.timeout),
          shell: c.body.shell,
        }),
      );
      const stream_url = `/api/v1/computers/${id}/exec/stream/events?ticket=${encodeURIComponent(t.ticket)}`;
      return json({ ticket: t.ticket, expires_at: t.expires_at, stream_url }, 202);
    },
  }),
  // GET is the stream; DELETE cancels its command (a Hangar extension). The ticket is the credential for both.
  ...(['GET', 'DELETE'] as const).map((method) =>
    route({
      method,
      path: '/api/v1/computers/:id/exec/stream/events',
      auth: 'self',
      handler: async (c) => {
        const id = requireComputerId(c.params.id);
        const headers = new Headers({ 'x-request-id': c.requestId });
        const lastEventId = c.request.headers.get('last-event-id');
        if (lastEventId) headers.set('last-event-id', lastEventId);
        return computerStub(c.env, id).fetch(new Request(c.url.toString(), { method, headers }));
      },
    }),
  ),
];
