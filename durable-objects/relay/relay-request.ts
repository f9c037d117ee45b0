/**
 * How a route hands a relayed connection to a Durable Object: an internal
 * request to RELAY_PATH whose RELAY_REQUEST_HEADER says what to open, for
 * whom, and which credential authorized it. Routes build the request afresh
 * (or strip every x-hangar- header of a client's request), so a client cannot
 * set the header itself.
 */
import { z } from 'zod';
import { CallerSchema } from '../exec/client-sockets.ts';

export const RELAY_PATH = '/relay';
export const RELAY_REQUEST_HEADER = 'x-hangar-relay';

const Port = z.number().int().min(1).max(65535);
const KeyId = z.string().max(64).nullable();
const Candidate = z.string().max(512).optional();

/** What the Worker verified about a preview request's caller; the object's port record decides what it may do. */
export const PreviewCaller = z.object({
  /** A Hangar credential of the computer's own organization, in scope (the API key behind it, if any). */
  tenant: z.object({ credential_id: KeyId }).nullable(),
  /** A valid Hangar credential of another organization or out of scope: the port is not there for it. */
  foreign: z.boolean(),
  /** A preview cookie signed for this computer and port. */
  cookie: z.object({ credential_id: KeyId }).nullable(),
  /** What may be the port's access token, by where it came from. */
  tokens: z.object({ query: Candidate, header: Candidate, cookie: Candidate }),
});
export type PreviewCaller = z.infer<typeof PreviewCaller>;

/** What the Worker verified about a tunnel request's caller; the tunnel's record decides what it may do (worker/tunnels/tunnel-auth.ts). */
export const TunnelCaller = z.object({
  tenant: z.object({ credential_id: KeyId }).nullable(),
  foreign: z.boolean(),
  cookie: z
    .discriminatedUnion('kind', [z.object({ kind: z.literal('tenant'), credential_id: KeyId }), z.object({ kind: z.literal('password'), version: z.string().max(64) })])
    .nullable(),
  password: z.string().max(1024).optional(),
});
export type TunnelCaller = z.infer<typeof TunnelCaller>;

const TunnelId = z.string().max(64);
/** `/t/{slug}` on the API host, `` on the tunnel's own host. */
const TunnelBase = z.string().max(80).regex(/^(?:\/t\/[a-z0-9-]{1,63})?$/);
const ClientAddress = z.string().max(64);

export const RelayRequest = z.discriminatedUnion('kind', [
  /** A raw TCP connection to a port of the computer over a WebSocket (binary messages are its bytes). */
  z.object({
    kind: z.literal('tcp'),
    caller: CallerSchema,
    port: Port,
    /** The API key that opened it (null for JWTs and stream tokens): revoking the key ends the connection. */
    credential_id: z.string().nullable(),
  }),
  /** An HTTP request (or WebSocket upgrade) to a port on its preview host; the object decides who may make it. */
  z.object({
    kind: z.literal('http'),
    port: Port,
    /** Path and query as the client sent them. */
    path: z.string().startsWith('/').max(16 * 1024),
    websocket: z.boolean(),
    who: PreviewCaller,
    /** The client came over https (cookies set for it are Secure). */
    https: z.boolean(),
    max_body: z.number().int().positive(),
    request_id: z.string().max(64),
    /** The computer's slug, to name the target in errors. */
    slug: z.string().max(64),
  }),
  /** A request (or WebSocket upgrade) through a tunnel to a port on a tenant's host; the host's object decides who may make it. */
  z.object({
    kind: z.literal('tunnel'),
    tunnel_id: TunnelId,
    /** The tunnel's host and organization (from D1): the object binds to them if it has not yet. */
    host_id: TunnelId,
    org_id: TunnelId,
    slug: z.string().max(63),
    base: TunnelBase,
    /** Path and query as the app sees them (the base taken off). */
    path: z.string().startsWith('/').max(16 * 1024),
    /** The client's Host: absolute URLs of the app on it are put under the base too. */
    host: z.string().max(300),
    websocket: z.boolean(),
    wants_html: z.boolean(),
    who: TunnelCaller,
    https: z.boolean(),
    client: ClientAddress,
    max_body: z.number().int().positive(),
    request_id: z.string().max(64),
  }),
  /** The login form of a password tunnel, posted: the password is checked (failures counted) and a cookie set. */
  z.object({
    kind: z.literal('tunnel_login'),
    tunnel_id: TunnelId,
    host_id: TunnelId,
    org_id: TunnelId,
    slug: z.string().max(63),
    base: TunnelBase,
    next: z.string().max(2048),
    password: z.string().max(1024),
    https: z.boolean(),
    client: ClientAddress,
    request_id: z.string().max(64),
  }),
]);
export type RelayRequest = z.infer<typeof RelayRequest>;

export const encodeRelayRequest = (r: RelayRequest): string => encodeURIComponent(JSON.stringify(r));

/** The request a route sent, or null when the header is missing or malformed. */
export function parseRelayRequest(header: string | null): RelayRequest | null {
  if (!header) return null;
  try {
    const r = RelayRequest.safeParse(JSON.parse(decodeURIComponent(header)));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
