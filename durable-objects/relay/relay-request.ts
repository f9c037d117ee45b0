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

export const RelayRequest = z.discriminatedUnion('kind', [
  /** A raw TCP connection to a port of the computer over a WebSocket (binary messages are its bytes). */
  z.object({
    kind: z.literal('tcp'),
    caller: CallerSchema,
    port: Port,
    /** The API key that opened it (null for JWTs and stream tokens): revoking the key ends the connection. */
    credential_id: z.string().nullable(),
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
