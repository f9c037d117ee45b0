/**
 * Exec over a WebSocket: GET …/exec/stream with `Upgrade: websocket` and
 * subprotocol `miosa-exec-v1`, as the MIOSA SDK's `exec.stream()` opens it
 * (POST on the same path is the SSE ticket route). Query: command, repeated
 * args and env (KEY=VALUE), cwd, tty, rows, cols. Credentials as on every
 * tenant route — `Authorization: Bearer` — or, from browsers that cannot set
 * headers, a second subprotocol `bearer.<key>`. The frames are described in
 * durable-objects/exec/ws-exec.ts and docs/streams.md.
 */
import { z } from 'zod';
import { ApiError } from '../../schema/errors.ts';
import { ENV_NAME, EXEC_MAX_COMMAND_BYTES } from '../../schema/api.ts';
import { validate } from '../http/body.ts';
import { DecimalInt } from '../../schema/text.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, requireComputerId } from '../computers/access.ts';
import { authenticateSocket, offeredProtocols } from '../computers/socket-auth.ts';
import { CLIENT_OPEN_HEADER, encodeClientOpen, type ExecSocketStart } from '../../durable-objects/exec/client-sockets.ts';
import { EXEC_SUBPROTOCOL } from '../../durable-objects/exec/ws-exec.ts';

const utf8Length = (s: string) => new TextEncoder().encode(s).byteLength;
const noNul = (s: string) => !s.includes('\0');
const TermSize = DecimalInt.pipe(z.number().int().min(1).max(1000));

const ExecSocketQuery = z.object({
  command: z
    .string()
    .min(1)
    .refine((s) => utf8Length(s) <= EXEC_MAX_COMMAND_BYTES, `must be at most ${EXEC_MAX_COMMAND_BYTES} bytes`)
    .refine(noNul, 'must not contain NUL characters'),
  args: z.array(z.string().refine(noNul, 'must not contain NUL characters')).max(4096),
  env: z
    .array(
      z
        .string()
        .refine((e) => ENV_NAME.test(e.slice(0, e.indexOf('='))) && e.includes('='), 'each must be KEY=VALUE with a name of letters, digits and underscores')
        .refine(noNul, 'must not contain NUL characters'),
    )
    .max(1024),
  cwd: z.string().min(1).max(4096).refine(noNul, 'must not contain NUL characters').optional(),
  tty: z.enum(['true', 'false', '1', '0']).optional(),
  rows: TermSize.optional(),
  cols: TermSize.optional(),
});

/** What the process runs: argv [command, ...args] without a shell when args are given, else `bash -c command`. */
function startOf(q: URLSearchParams): ExecSocketStart {
  const v = validate(
    ExecSocketQuery,
    {
      command: q.get('command') ?? undefined,
      args: q.getAll('args'),
      env: q.getAll('env'),
      cwd: q.get('cwd') ?? undefined,
      tty: q.get('tty') ?? undefined,
      rows: q.get('rows') ?? undefined,
      cols: q.get('cols') ?? undefined,
    },
    'query',
  );
  const env = Object.fromEntries(v.env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  const tty = v.tty === 'true' || v.tty === '1';
  return {
    ...(v.args.length ? { argv: [v.command, ...v.args] } : { command: v.command, shell: '/bin/bash' }),
    ...(v.cwd !== undefined && { cwd: v.cwd }),
    ...(v.env.length && { env }),
    ...(tty && { tty: { rows: v.rows ?? 24, cols: v.cols ?? 80 } }),
  };
}

/** A 400 with `hint` unless the request asks for a WebSocket. */
export function requireUpgrade(request: Request, hint: string): void {
  if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') throw new ApiError('BAD_REQUEST', hint);
}

export const EXEC_SOCKET_ROUTES: RouteDef[] = [
  route({
    method: 'GET',
    path: '/api/v1/computers/:id/exec/stream',
    auth: 'self',
    handler: async (c) => {
      requireUpgrade(c.request, `GET on this path opens a WebSocket (Upgrade: websocket, subprotocol ${EXEC_SUBPROTOCOL}); POST starts a command for Server-Sent Events`);
      const principal = await authenticateSocket(c);
      const id = requireComputerId(c.params.id);
      const start = startOf(c.query);
      const open = encodeClientOpen({
        kind: 'exec',
        caller: callerOf(principal),
        start,
        // Select the protocol only when offered: a client that offered others would fail on an unoffered one.
        subprotocol: offeredProtocols(c.request).includes(EXEC_SUBPROTOCOL) ? EXEC_SUBPROTOCOL : null,
      });
      const headers = new Headers({ upgrade: 'websocket', 'x-request-id': c.requestId, [CLIENT_OPEN_HEADER]: open });
      return computerStub(c.env, id).fetch(new Request(c.url.toString(), { headers }));
    },
  }),
];
