/**
 * The request pipeline every route goes through, in order: request id, route
 * match (404/405), authentication, rate limit, body (size, JSON, zod),
 * idempotency, handler. Whatever is thrown becomes the error envelope, and
 * every response carries X-Request-Id.
 */
import { ApiError } from '../schema/errors.ts';
import type { Env } from './env.ts';
import { newRequestId } from './http/ids.ts';
import { errorResponse, withRequestId } from './http/responses.ts';
import { preflight } from './http/cors.ts';
import { parseJson, readBodyText, validate } from './http/body.ts';
import { buildMatcher, type RouteContext, type RouteDef } from './router.ts';
import { authenticateTenant, authenticateOperator } from './middleware/auth.ts';
import { enforceRateLimit, clientAddress, RATE_LIMITS } from './middleware/rate-limit.ts';
import { withIdempotency } from './middleware/idempotency.ts';
import type { Principal } from './middleware/principal.ts';
import { ROUTES } from './routes/index.ts';

const match = buildMatcher(ROUTES);
const MUTATIONS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export async function handleRequest(request: Request, env: Env, exec: ExecutionContext): Promise<Response> {
  const requestId = newRequestId();
  if (request.method === 'OPTIONS') return withRequestId(preflight(), requestId);
  let res: Response;
  try {
    res = await dispatch(request, env, exec, requestId);
  } catch (err) {
    res = errorResponse(err, requestId);
  }
  return withRequestId(res, requestId);
}

async function dispatch(request: Request, env: Env, exec: ExecutionContext, requestId: string): Promise<Response> {
  const url = new URL(request.url);
  const m = await match(request.method === 'HEAD' ? 'GET' : request.method, url);
  if (m.kind === 'none') {
    await enforceRateLimit(env, `ip:${clientAddress(request)}`, RATE_LIMITS.public);
    throw new ApiError('NOT_FOUND', `no route for ${request.method} ${url.pathname}`);
  }
  if (m.kind === 'method') {
    throw new ApiError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${url.pathname}; allowed: ${m.allowed.join(', ')}`, {
      allow: m.allowed.join(', '),
    });
  }
  const def = m.def;
  const principal = await authorize(def, request, env);

  const isMutation = MUTATIONS.has(request.method);
  const raw = def.rawBody ? '' : def.body || isMutation ? await readBodyText(request, def.bodyLimit) : '';
  const body = def.body ? validate(def.body, parseJson(raw)) : undefined;

  const ctx: RouteContext = {
    request,
    env,
    exec,
    requestId,
    url,
    params: m.params,
    query: url.searchParams,
    principal: principal as Principal,
    body,
  };
  const run = def.auth === 'self' ? () => countingFailures(env, clientAddress(request), () => def.handler(ctx)) : () => def.handler(ctx);
  const key = request.headers.get('idempotency-key');
  if (isMutation && key !== null && principal) {
    // A streamed body cannot be read twice: its retries are told apart by what the request says of it.
    const what = def.rawBody ? `${url.search}\n${request.headers.get('content-type')}\n${request.headers.get('content-length')}` : raw;
    return withIdempotency(env, principal.org_id, key, `${request.method} ${url.pathname}\n${what}`, run);
  }
  return run();
}

/** Authenticates per the route's mode and counts the request against its rate limit. */
async function authorize(def: RouteDef, request: Request, env: Env): Promise<Principal | null> {
  const ip = clientAddress(request);
  switch (def.auth) {
    case 'tenant': {
      const principal = await countingFailures(env, ip, () => authenticateTenant(request, env));
      await enforceRateLimit(env, `ws:${principal.rate_scope}`, principal.rate_limit ?? RATE_LIMITS.general);
      return principal;
    }
    case 'operator':
      await countingFailures(env, ip, () => authenticateOperator(request, env));
      return null;
    case 'auth':
      await enforceRateLimit(env, `auth:${ip}`, RATE_LIMITS.auth);
      return null;
    case 'public':
      await enforceRateLimit(env, `ip:${ip}`, RATE_LIMITS.public);
      return null;
    case 'self':
      return null;
  }
}

/** A request whose credentials fail is unauthenticated traffic: it counts against the per-address limit. */
export async function countingFailures<T>(env: Env, ip: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    if (err instanceof ApiError && err.code === 'UNAUTHORIZED') await enforceRateLimit(env, `ip:${ip}`, RATE_LIMITS.public);
    throw err;
  }
}
