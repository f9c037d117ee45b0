/**
 * Sockets of people (not agents) attached to a streamed process: exec
 * sockets (miosa-exec-v1) and terminal viewers. Hibernation-friendly: each is
 * tagged `client:<proc_id>` and carries its kind in its attachment, so the
 * object finds them again after it wakes. Also the internal request by which
 * a route hands an authenticated upgrade to the ComputerObject.
 */
import { z } from 'zod';
import { ProcId, ProcStartParams } from '../../schema/protocol.ts';
import { EventsOpen } from '../../schema/events.ts';

export type ClientKind = 'exec' | 'terminal';

export interface ClientAttachment {
  kind: ClientKind;
  proc_id: string;
}

/**
 * Close codes of client sockets (see docs/streams.md). 1000/1003/1009/1011 are
 * the standard ones; 4xxx are ours, with a reason that says what happened.
 */
export const CLOSE = {
  /** Exec: the process exited (after the 0x03 frame). */
  EXITED: 1000,
  /** A frame this socket does not take. */
  UNSUPPORTED: 1003,
  /** More stdin queued than STDIN_QUEUE_BYTES: the reader is not keeping up. */
  TOO_BIG: 1009,
  /** Exec: the process was lost (its computer stopped, restarted, or its host lost it). */
  LOST: 1011,
  /** Terminal: the shell exited; reason "shell exited with code N". */
  SHELL_EXITED: 4000,
  /** Terminal: the session ended without an exit code (its computer stopped, or its host lost it). */
  SESSION_LOST: 4001,
  /** The computer was deleted (ComputerObject.forget). */
  COMPUTER_DELETED: 4004,
} as const;

/** The hibernation tag of a process's client sockets. */
export const clientTag = (procId: string): string => `client:${procId}`;

/** Accepts a client socket as hibernatable, tagged with its process and with `tags` (its credential's). */
export function acceptClient(ctx: DurableObjectState, ws: WebSocket, kind: ClientKind, procId: string, tags: string[] = []): void {
  ctx.acceptWebSocket(ws, [clientTag(procId), ...tags]);
  ws.serializeAttachment({ kind, proc_id: procId } satisfies ClientAttachment);
}

/** What a client socket is attached to; null for other sockets (the agent's). */
export function clientOf(ws: WebSocket): ClientAttachment | null {
  const a = ws.deserializeAttachment() as Partial<ClientAttachment> | null;
  return a && (a.kind === 'exec' || a.kind === 'terminal') && typeof a.proc_id === 'string' ? (a as ClientAttachment) : null;
}

/** The open sockets of a process, leaving out `except` (one that is closing). */
export function openClients(ctx: DurableObjectState, procId: string, except?: WebSocket): WebSocket[] {
  return ctx.getWebSockets(clientTag(procId)).filter((ws) => ws !== except && ws.readyState === WebSocket.OPEN);
}

/** Output travels in frames of at most this many payload bytes. */
const SEND_CHUNK_BYTES = 64 * 1024;

/** Sends bytes to each socket, in chunks, each chunk prefixed with `prefix` when one is given. */
export function sendBytes(sockets: WebSocket[], bytes: Uint8Array, prefix?: number): void {
  if (sockets.length === 0 || bytes.byteLength === 0) return;
  for (let at = 0; at < bytes.byteLength; at += SEND_CHUNK_BYTES) {
    const piece = bytes.subarray(at, at + SEND_CHUNK_BYTES);
    let frame: Uint8Array = piece;
    if (prefix !== undefined) {
      frame = new Uint8Array(piece.byteLength + 1);
      frame[0] = prefix;
      frame.set(piece, 1);
    }
    for (const ws of sockets) safely(() => ws.send(frame));
  }
}

/** Closes a socket; reasons are cut to the 123 bytes a close frame holds. */
export function closeSocket(ws: WebSocket, code: number, reason: string): void {
  const bytes = new TextEncoder().encode(reason);
  const cut = bytes.byteLength <= 123 ? reason : new TextDecoder().decode(bytes.subarray(0, 120)).replace(/\uFFFD+$/, '') + '…';
  safely(() => ws.close(code, cut));
}

/** Closes every open socket of a process. */
export function closeClients(ctx: DurableObjectState, procId: string, code: number, reason: string): void {
  for (const ws of openClients(ctx, procId)) closeSocket(ws, code, reason);
}

function safely(f: () => void): void {
  try {
    f();
  } catch {
    /* the socket is closing or gone */
  }
}

// ------------------------------------------------------------ route -> object

/** Header carrying a ClientOpen from a route to the ComputerObject; routes build the request afresh, so a client cannot set it. */
export const CLIENT_OPEN_HEADER = 'x-hangar-client-open';

/** A Caller as a route hands it over in a header. */
export const CallerSchema = z.object({
  org_id: z.string(),
  workspace_ids: z.array(z.string()).nullable(),
  project_ids: z.array(z.string()).nullable(),
  credential_id: z.string().nullable(),
});

/** What an exec socket runs: ProcStartParams without the parts the object chooses. */
export const ExecSocketStart = ProcStartParams.omit({ proc_id: true, stdin: true, timeout_s: true });
export type ExecSocketStart = z.infer<typeof ExecSocketStart>;

export const ClientOpen = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('exec'),
    caller: CallerSchema,
    start: ExecSocketStart,
    /** The subprotocol to select in the 101, when the client offered it. */
    subprotocol: z.string().nullable(),
  }),
  /** A terminal viewer; the route verified a stream token (a caller of the whole organization) or a tenant credential. */
  z.object({ kind: z.literal('terminal'), caller: CallerSchema, session_id: ProcId }),
  /** An events socket (durable-objects/events/watch-sockets.ts). */
  z.object({ kind: z.literal('events'), caller: CallerSchema, open: EventsOpen }),
]);
export type ClientOpen = z.infer<typeof ClientOpen>;

/** The header value: URI-encoded JSON, since a header holds neither newlines nor most of Unicode. */
export const encodeClientOpen = (open: ClientOpen): string => encodeURIComponent(JSON.stringify(open));

/** The ClientOpen a route sent, or null when the header is missing or malformed. */
export function parseClientOpen(header: string | null): ClientOpen | null {
  if (!header) return null;
  try {
    const r = ClientOpen.safeParse(JSON.parse(decodeURIComponent(header)));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
