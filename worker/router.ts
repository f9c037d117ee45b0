/**
 * Route table: each resource module exports a list of RouteDefs; the app
 * matches them with itty-router and answers 404 for unknown paths and 405 for
 * known paths with another method.
 */
import { IttyRouter } from 'itty-router';
import type { z } from 'zod';
import type { Env } from './env.ts';
import type { Principal } from './middleware/principal.ts';

/**
 * Who may call a route:
 *  - tenant: an API key or JWT of an organization (rate limited per workspace);
 *  - operator: the operator token (admin API);
 *  - auth: unauthenticated endpoints that mint credentials (20/min);
 *  - public: anyone (60/min per client address);
 *  - self: the handler checks a credential of its own (host keys, stream
 *    tickets); only failed attempts count against the per-address limit.
 */
export type AuthMode = 'tenant' | 'operator' | 'auth' | 'public' | 'self';

export interface RouteContext<B = unknown> {
  request: Request;
  env: Env;
  exec: ExecutionContext;
  requestId: string;
  url: URL;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Set on tenant routes. */
  principal: Principal;
  /** The validated body on routes that declare one. */
  body: B;
}

export interface RouteDef<B = unknown> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  auth: AuthMode;
  body?: z.ZodType<B>;
  /** Bytes a JSON body may have (default MAX_JSON_BODY_BYTES); past it, a 413. */
  bodyLimit?: number;
  /** The handler reads the request's body itself, as a stream (uploads): the pipeline leaves it alone. */
  rawBody?: boolean;
  handler: (c: RouteContext<B>) => Promise<Response>;
}

/** Typed constructor so a handler's `body` has its schema's type. */
export const route = <B>(def: RouteDef<B>): RouteDef => def as unknown as RouteDef;

export type Match = { kind: 'route'; def: RouteDef; params: Record<string, string> } | { kind: 'method'; allowed: string[] } | { kind: 'none' };

export function buildMatcher(defs: RouteDef[]) {
  const router = IttyRouter();
  for (const def of defs) {
    // itty's handler only records the match; the app runs the pipeline itself.
    (router as unknown as Record<string, (p: string, h: (r: { params: Record<string, string> }) => unknown) => void>)[def.method.toLowerCase()](
      def.path,
      (r) => ({ def, params: r.params }),
    );
  }
  const table = router.routes as unknown as Array<[string, RegExp, unknown, string]>;

  return async function match(method: string, url: URL): Promise<Match> {
    const probe = { method, url: url.toString() } as unknown as Request;
    const hit = (await router.fetch(probe)) as { def: RouteDef; params: Record<string, string> } | undefined;
    if (hit) return { kind: 'route', def: hit.def, params: decodeParams(hit.params) };
    const allowed = [...new Set(table.filter(([, re]) => re.test(url.pathname)).map(([m]) => m))];
    if (allowed.length) return { kind: 'method', allowed };
    return { kind: 'none' };
  };
}

function decodeParams(p: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(p)) {
    try {
      out[k] = decodeURIComponent(v);
    } catch {
      out[k] = v;
    }
  }
  return out;
}
