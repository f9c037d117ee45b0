/**
 * A request body in larger pieces. workerd hands a request's body to the
 * object in 4 KiB chunks; sent as they come, each would be a relay frame and
 * a guest write of its own, and a file would move at a few MiB/s. Joined up to
 * a relay frame (256 KiB) they move at the speed of the link. A file body is
 * not interactive: holding a piece until it fills, or the body ends, delays
 * nothing anyone waits for.
 */
import { RELAY_FRAME_BYTES } from '../../schema/relay.ts';

export function coalesced(body: ReadableStream<Uint8Array>, size = RELAY_FRAME_BYTES): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const parts: Uint8Array[] = [];
        let bytes = 0;
        while (bytes < size) {
          const { done, value } = await reader.read();
          if (done) break;
          // A chunk larger than the piece passes as it is: the relay splits it into frames.
          if (bytes === 0 && value.byteLength >= size) return controller.enqueue(value);
          parts.push(value);
          bytes += value.byteLength;
        }
        if (bytes === 0) return controller.close();
        controller.enqueue(parts.length === 1 ? parts[0] : join(parts, bytes));
        if (bytes < size) controller.close();
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

function join(parts: Uint8Array[], bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
