/**
 * Who opens a WebSocket to a computer: browsers cannot send headers on a
 * WebSocket, so a stream token (`?auth=`, bound to the computer and its
 * organization) stands in for the bearer header other clients send.
 */
import { ApiError } from '../../schema/errors.ts';
import type { Caller } from '../../durable-objects/computer/record.ts';
import { authenticateTenant, bearer } from '../middleware/auth.ts';
import { RATE_LIMITS, enforceRateLimit } from '../middleware/rate-limit.ts';
import type { Principal } from '../middleware/principal.ts';
import type { RouteContext } from '../router.ts';
import { callerOf } from './access.ts';
import { verifyStreamToken } from './stream-token.ts';

const BEARER_PROTOCOL = 'bearer.';

/** The subprotocols a client offered, in order. */
export function offeredProtocols(request: Request): string[] {
  return (request.headers.get('sec-websocket-protocol') ?? '')
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean);
}

/** Authenticates an upgrade or a stream like any tenant request; a `bearer.<key>` subprotocol stands in for the header (browsers' WebSockets cannot send one). */
export async function authenticateSocket(c: RouteContext): Promise<Principal> {
  const fromProtocol = offeredProtocols(c.request).find((p) => p.startsWith(BEARER_PROTOCOL));
  const credential = bearer(c.request) ?? fromProtocol?.slice(BEARER_PROTOCOL.length);
  const headers = credential ? { authorization: `Bearer ${credential}` } : undefined;
  const principal = await authenticateTenant(new Request(c.url.toString(), { headers }), c.env);
  await enforceRateLimit(c.env, `ws:${principal.rate_scope}`, principal.rate_limit ?? RATE_LIMITS.general);
  return principal;
}

/** The API key behind a principal (the key, or the key a JWT was minted from; null otherwise): what revoking ends. */
export const credentialOf = (p: Principal): string | null => p.credential_id;

/** A stream token stands for its whole organization; without one, the caller's own credential and scope. */
export async function socketCaller(c: RouteContext, computerId: string): Promise<{ caller: Caller; credential_id: string | null; principal: Principal | null }> {
  const token = c.query.get('auth');
  if (token === null) {
    const principal = await authenticateSocket(c);
    return { caller: callerOf(principal), credential_id: credentialOf(principal), principal };
  }
  const grant = await verifyStreamToken(c.env, token, computerId);
  if (!grant) throw new ApiError('UNAUTHORIZED', 'invalid, expired or revoked stream token; get a fresh one from POST …/stream-token');
  const caller: Caller = { org_id: grant.org_id, workspace_ids: null, project_ids: null, credential_id: grant.credential_id };
  return { caller, credential_id: grant.credential_id, principal: null };
}
