/**
 * A relayed stream's bytes as web streams: what the agent sends as a
 * ReadableStream that credits the agent only as its reader takes each chunk
 * (so a slow client holds back this stream and nothing else), and a body
 * (a request's) written into the stream as fast as the agent's credit allows.
 */
import { RELAY_FRAME_BYTES } from '../../schema/relay.ts';
import type { RelayStream, StreamReset } from './relay-stream.ts';

/** Why a relayed body ended early. */
export class RelayBroken extends Error {
  readonly reset: StreamReset;
  constructor(reset: StreamReset) {
    super(reset.message);
    this.reset = reset;
  }
}

/**
 * The bytes the agent sends, as a stream with no buffer of its own: each
 * chunk is credited when a read takes it. A reset errors the stream; a
 * reader that cancels resets it.
 */
export function readableOf(stream: RelayStream): ReadableStream<Uint8Array> {
  const queue: Uint8Array[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  const poke = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  stream.attach({
    data: (payload) => {
      queue.push(payload);
      poke();
    },
    end: () => {
      ended = true;
      poke();
    },
  });
  void stream.done.then(poke);
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const chunk = queue.shift();
          if (chunk) {
            if (chunk.byteLength > 0) controller.enqueue(chunk);
            stream.consumed(chunk.byteLength);
            if (chunk.byteLength > 0) return;
            continue;
          }
          // A FIN first means every byte arrived: a reset after it (the app closed early) does not spoil them.
          if (ended) return controller.close();
          if (stream.failure) return controller.error(new RelayBroken(stream.failure));
          await new Promise<void>((r) => (wake = r));
        }
      },
      cancel() {
        stream.reset('closed', 'the client went away');
      },
    },
    { highWaterMark: 0 },
  );
}

/** How writing a body into a stream ended. */
export type PumpOutcome = { kind: 'done'; bytes: number } | { kind: 'too_large'; bytes: number } | { kind: 'reset' } | { kind: 'body_error'; message: string };

/**
 * Writes `body` into the stream and closes the stream's direction (FIN) at
 * its end. Past `maxBytes` it stops and says so, leaving the stream open for
 * the caller to reset or answer; a body that fails (the client went away)
 * resets the stream.
 */
export async function pumpInto(body: ReadableStream<Uint8Array> | null, stream: RelayStream, maxBytes = Infinity): Promise<PumpOutcome> {
  if (!body) {
    stream.closeWrite();
    return { kind: 'done', bytes: 0 };
  }
  const reader = piecesOf(body);
  let bytes = 0;
  try {
    for (;;) {
      const value = await reader.read();
      if (value === null) {
        stream.closeWrite();
        return { kind: 'done', bytes };
      }
      bytes += value.byteLength;
      if (bytes > maxBytes) {
        reader.cancel();
        return { kind: 'too_large', bytes };
      }
      // The piece is copied into its frames before write resolves: the reader may reuse its buffer after.
      if (!(await stream.write(value))) {
        reader.cancel();
        return { kind: 'reset' };
      }
    }
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    stream.reset('closed', `the client's request body failed: ${message}`);
    return { kind: 'body_error', message };
  }
}

/** A body read in pieces of up to a relay frame; a piece is valid until the next read. */
interface PieceReader {
  /** The next piece, or null at the end. */
  read(): Promise<Uint8Array | null>;
  cancel(): void;
}

/**
 * Reads a body in pieces as large as what has arrived, up to a relay frame.
 * workerd hands a request body to a Durable Object in 4 KiB chunks; sent as
 * they come, each would be a frame, an agent write and a guest write of its
 * own, which holds an upload to a few tens of MiB/s. A BYOB read into a
 * frame-sized buffer takes everything already there in one piece and never
 * waits for more (an interactive body loses nothing), and the buffer is
 * reused from piece to piece. Bodies that are not byte streams are read as
 * they come.
 */
function piecesOf(body: ReadableStream<Uint8Array>): PieceReader {
  let byob: ReadableStreamBYOBReader | null = null;
  try {
    byob = body.getReader({ mode: 'byob' });
  } catch {
    /* not a byte stream */
  }
  if (!byob) {
    const reader = body.getReader();
    return {
      read: async () => {
        const { done, value } = await reader.read();
        return done ? null : value;
      },
      cancel: () => void reader.cancel().catch(() => {}),
    };
  }
  const r = byob;
  let buffer: ArrayBuffer = new ArrayBuffer(RELAY_FRAME_BYTES);
  return {
    async read() {
      for (;;) {
        const { done, value } = await r.read(new Uint8Array(buffer));
        if (value) buffer = value.buffer as ArrayBuffer; // the read transferred it; ours again
        if (done) return null;
        if (value && value.byteLength > 0) return value;
      }
    },
    cancel: () => void r.cancel().catch(() => {}),
  };
}
