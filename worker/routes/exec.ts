/**
 * Sync exec (spec/03-exec.txt): bash and Python, combined output in order,
 * default timeout 30 s clamped to 300, exit 124 on timeout. This is the hot
 * path: no D1 read — the ComputerObject itself checks the caller's tenancy.
 */
import { unwrap } from '../../schema/errors.ts';
import { EXEC_DEFAULT_TIMEOUT_S, EXEC_MAX_OUTPUT_BYTES, EXEC_MAX_TIMEOUT_S, ExecBody, ExecPythonBody } from '../../schema/api.ts';
import { json } from '../http/responses.ts';
import { route, type RouteContext, type RouteDef } from '../router.ts';
import { callerOf, computerStub, requireComputerId } from '../computers/access.ts';

export const clampTimeout = (t: number | undefined) => Math.min(t ?? EXEC_DEFAULT_TIMEOUT_S, EXEC_MAX_TIMEOUT_S);

/** Appended to output that hit the cap, so a reader of `output` alone sees it was cut. */
export const TRUNCATION_MARKER = `\n[output truncated: only the first ${EXEC_MAX_OUTPUT_BYTES} bytes are kept]\n`;

/**
 * Python as the page describes: the code goes to /tmp/miosa_exec_<random>.py,
 * runs with python3, and the file is removed after, on timeout too (the TERM
 * trap lets bash run its EXIT trap). The code travels on stdin.
 */
const PYTHON_RUNNER =
  'f=$(mktemp /tmp/miosa_exec_XXXXXXXXXX.py) || exit 1; trap \'rm -f "$f"\' EXIT; trap \'exit 143\' TERM; cat > "$f"; python3 "$f" 2>&1';

/**
 * Runs the command and answers the page's `{output, exit_code}` with `stdout`
 * and `stderr` apart beside them. The request's Idempotency-Key (if any)
 * names the command, so a retry after a 504 gets its result instead of
 * running it again (durable-objects/exec/sync-exec.ts).
 */
async function run(c: RouteContext, params: { command: string; stdin?: string; timeout_s: number }): Promise<Response> {
  const id = requireComputerId(c.params.id);
  const key = c.request.headers.get('idempotency-key') ?? undefined;
  const r = unwrap(await computerStub(c.env, id).exec(callerOf(c.principal), { ...params, max_output_bytes: EXEC_MAX_OUTPUT_BYTES, key }));
  return json({
    output: r.truncated ? r.output + TRUNCATION_MARKER : r.output,
    exit_code: r.exit_code,
    stdout: r.stdout,
    stderr: r.stderr,
    timed_out: r.timed_out,
    truncated: r.truncated,
    duration_ms: r.duration_ms,
  });
}

export const EXEC_ROUTES: RouteDef[] = [
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/exec',
    auth: 'tenant',
    body: ExecBody,
    handler: (c) => run(c, { command: c.body.command, timeout_s: clampTimeout(c.body.timeout) }),
  }),
  route({
    method: 'POST',
    path: '/api/v1/computers/:id/exec/python',
    auth: 'tenant',
    body: ExecPythonBody,
    handler: (c) => run(c, { command: PYTHON_RUNNER, stdin: c.body.code, timeout_s: clampTimeout(c.body.timeout) }),
  }),
];
