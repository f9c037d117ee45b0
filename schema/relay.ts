/**
 * Relayed byte streams on an agent link (agent protocol 1.4; docs/relay.md).
 *
 * Many streams share one agent WebSocket (a computer socket, or a host
 * socket). The object opens a stream towards a target the agent can reach (a
 * TCP port inside the computer, or on the host's loopback); the agent
 * connects and says `relay.accept`, or refuses with `relay.reset`. Then bytes
 * flow both ways as binary relay frames, each direction under its own credit:
 * a side may send up to `offset + window` where `offset` is the last
 * `relay.credit` the receiver sent (0 at first) and `window` what the
 * receiver announced (in `relay.open` for the object, in `relay.accept` for
 * the agent; a credit may carry a larger one, see `relay.credit`). A slow
 * reader therefore holds back only its own stream, and no side ever holds
 * more than a window per stream.
 *
 * TCP semantics: `relay.close` is a FIN for one direction (the peer may keep
 * sending); the stream ends when both directions have closed. `relay.reset`
 * is an RST: it ends both directions at once, bytes in flight are dropped.
 *
 * A stream may carry, instead of raw bytes, one HTTP/1.1 exchange that the
 * agent speaks to the target (`http` in the open): the request body flows as
 * the object's bytes, the response head comes back as `relay.response`, its
 * body as the agent's bytes. With `http.websocket` the agent opens a
 * WebSocket to the target and the stream carries its messages: each message is
 * one or more frames, the last flagged FLAG_MESSAGE_END, text ones flagged
 * FLAG_TEXT, and a close carries its code in `relay.close.ws`.
 */
import { z } from 'zod';
import { FileStream } from './guest.ts';
import { frameHead, packFrame, unpackFrame } from './protocol.ts';

/** Chosen by the side that opens the stream; travels in every frame, so short. */
export const StreamId = z.string().regex(/^[a-z0-9]{1,32}$/);

const Port = z.number().int().min(1).max(65535);

/**
 * Where a stream leads. Add a kind here, give the agent an opener for it
 * (host-agent/relay/openers.ts) and a socket that serves it (docs/relay.md).
 */
export const RelayTarget = z.discriminatedUnion('kind', [
  /** A TCP port inside a computer's network namespace; the computer's guest connects to it (computer sockets). */
  z.object({ kind: z.literal('computer_tcp'), port: Port }),
  /** A TCP port on the host's loopback (host sockets of tenant hosts: tunnels). */
  z.object({ kind: z.literal('host_tcp'), port: Port }),
  /**
   * A file on a tenant host (host sockets; OpenComputers files, protocol 1.5).
   * `read`: the agent sends `length` bytes from `start`, then its FIN.
   * `write`: the object's bytes are the whole new file; at the object's FIN the
   * agent puts it in place and sends one JSON line `{"path", "bytes"}` before its own.
   * `path` is absolute, as `fs.prepare` answered it.
   */
  z.object({
    kind: z.literal('host_file'),
    path: z.string().min(1).max(4096),
    mode: z.enum(['read', 'write']),
    start: z.number().int().nonnegative().optional(),
    length: z.number().int().nonnegative().optional(),
  }),
  /** 1.6: a file's bytes in a computer, through its guest (computer sockets; schema/guest.ts FileStream). */
  z.object({ kind: z.literal('computer_file'), file: FileStream }),
]);
export type RelayTarget = z.infer<typeof RelayTarget>;
export type RelayTargetKind = RelayTarget['kind'];

/** Header name/value pairs in order, duplicates kept (Set-Cookie). */
export const HeaderList = z.array(z.tuple([z.string().min(1).max(256), z.string().max(16 * 1024)])).max(512);
export type HeaderList = z.infer<typeof HeaderList>;

/** An HTTP request for the agent to make to the target over the stream's connection. */
export const RelayHttpRequest = z.object({
  /** An HTTP token (RFC 9110), so any method an app may understand passes. */
  method: z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/),
  /** Path and query as the app sees them. */
  path: z.string().regex(/^\/[^\s]*$/).max(16 * 1024),
  headers: HeaderList,
  /** A WebSocket upgrade: the agent opens a WebSocket to the target and the stream carries messages. */
  websocket: z.boolean(),
});
export type RelayHttpRequest = z.infer<typeof RelayHttpRequest>;

/** Bounds of the receive window a side may announce. */
export const MIN_WINDOW = 16 * 1024;
export const MAX_WINDOW = 16 * 1024 * 1024;
const Window = z.number().int().min(MIN_WINDOW).max(MAX_WINDOW);
const Offset = z.number().int().nonnegative();

/** Why a stream ended abruptly (or never opened). */
export const RESET_CODES = [
  /** Nothing listens on the target port (ECONNREFUSED). */
  'refused',
  /** The target cannot be reached: the computer is not running, its guest is away, the agent cannot serve it. */
  'unreachable',
  /** The target kind is not served on this socket, or the agent is too old for it. */
  'unsupported',
  /** The connection did not open in time. */
  'timeout',
  /** The other end reset the connection (ECONNRESET, an app that aborted). */
  'reset',
  /** Ended on purpose: the client went away, the port was removed, the credential revoked. */
  'closed',
  /** The peer broke the protocol (sent beyond its credit, out of order). */
  'protocol',
  /** Too many streams on this link. */
  'limit',
  /** Anything else; the message says what. */
  'error',
] as const;
export const ResetCode = z.enum(RESET_CODES);
export type ResetCode = z.infer<typeof ResetCode>;

const Reset = z.object({ type: z.literal('relay.reset'), stream_id: StreamId, code: ResetCode, message: z.string().max(1024) });
/**
 * "I have taken your bytes up to `offset`." With `window`, the receiver's
 * window grows to it from now on (never shrinks): a receiver whose reader
 * keeps up while the sender waits on credit widens it, so a stream over a
 * link with a long round trip is not held to a window per round trip. A
 * sender that does not know the field keeps the smaller window, which is
 * always safe.
 */
const Credit = z.object({ type: z.literal('relay.credit'), stream_id: StreamId, offset: Offset, window: Window.optional() });
/** FIN: the sender has sent its last byte (`offset` bytes in all); a WebSocket's close code rides along. */
const Close = z.object({
  type: z.literal('relay.close'),
  stream_id: StreamId,
  offset: Offset,
  ws: z.object({ code: z.number().int().min(1000).max(4999), reason: z.string().max(123) }).optional(),
});

export const RelayOpen = z.object({
  type: z.literal('relay.open'),
  stream_id: StreamId,
  target: RelayTarget,
  /** Bytes the agent may send before the first credit. */
  window: Window,
  http: RelayHttpRequest.optional(),
  /** The object flags the frame that spends its credit (FLAG_STARVED) and widens its window on the agent's flags. */
  widen: z.literal(true).optional(),
});
export type RelayOpen = z.infer<typeof RelayOpen>;

/** The agent connected to the target; `window` is what the object may send before the agent's first credit. */
export const RelayAccept = z.object({
  type: z.literal('relay.accept'),
  stream_id: StreamId,
  window: Window,
  /** As `relay.open.widen`, for the agent. */
  widen: z.literal(true).optional(),
});

/** The target's response head (http streams), or the 101 of its WebSocket with the subprotocol it chose. */
export const RelayResponse = z.object({
  type: z.literal('relay.response'),
  stream_id: StreamId,
  status: z.number().int().min(101).max(599),
  headers: HeaderList,
});
export type RelayResponse = z.infer<typeof RelayResponse>;

/** What the object sends about streams. */
export const RelayServerMessage = z.discriminatedUnion('type', [RelayOpen, Credit, Close, Reset]);
export type RelayServerMessage = z.infer<typeof RelayServerMessage>;

/** What the agent sends about streams. */
export const RelayAgentMessage = z.discriminatedUnion('type', [RelayAccept, RelayResponse, Credit, Close, Reset]);
export type RelayAgentMessage = z.infer<typeof RelayAgentMessage>;

export type RelayClose = z.infer<typeof Close>;
export type RelayReset = z.infer<typeof Reset>;

/** True for a parsed JSON message that belongs to the relay (validated by the relay's own schemas). */
export const isRelayMessage = (raw: unknown): boolean =>
  typeof raw === 'object' && raw !== null && typeof (raw as { type?: unknown }).type === 'string' && (raw as { type: string }).type.startsWith('relay.');

// ------------------------------------------------------------ binary frames
//
// Kind 4 in the agent protocol's frame layout (schema/protocol.ts):
//   u8 4 | u8 flags | u8 id_len | id | f64 offset | payload
// `offset` is where the payload starts in its direction of the stream.

export const FRAME_RELAY = 4;
/** The frame ends a WebSocket message. */
export const FLAG_MESSAGE_END = 1;
/** The message is text (UTF-8). */
export const FLAG_TEXT = 2;
/**
 * The sender has spent its credit with this frame: it can send nothing more
 * until the next credit. Sent only to a peer that said `widen` (older ones
 * refuse unknown flags); the receiver may then widen its window
 * (schema/relay-window.ts).
 */
export const FLAG_STARVED = 4;

/** Largest payload of one relay frame (a Workers WebSocket message is at most 1 MiB). */
export const RELAY_FRAME_BYTES = 256 * 1024;

export interface RelayFrame {
  stream_id: string;
  flags: number;
  offset: number;
  payload: Uint8Array;
}

export function encodeRelayFrame(f: RelayFrame): Uint8Array {
  return packFrame(FRAME_RELAY, f.flags, f.stream_id, f.offset, f.payload);
}

/** A relay frame as the two pieces of one message, header and payload, the payload not copied (see frameHead). */
export function relayFrameParts(f: RelayFrame): [Uint8Array, Uint8Array] {
  return [frameHead(FRAME_RELAY, f.flags, f.stream_id, f.offset), f.payload];
}

/** Parses a relay frame; null when it is malformed, too large or another kind. */
export function decodeRelayFrame(buf: Uint8Array): RelayFrame | null {
  const f = unpackFrame(buf);
  if (!f || f.kind !== FRAME_RELAY || f.stream > 7 || f.payload.byteLength > RELAY_FRAME_BYTES) return null;
  if (!StreamId.safeParse(f.id).success) return null;
  return { stream_id: f.id, flags: f.stream, offset: f.offset, payload: f.payload };
}
