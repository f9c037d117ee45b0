/** Frames of the guest protocol (schema/guest.ts): the shared codec with the guest's bounds. */
import { MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES } from '../schema/guest.ts';
import { LengthPrefixedDecoder, encodeFrame as encodeWith, type FrameLimits } from '../schema/frames.ts';

export { FrameTooLarge, type RawFrame } from '../schema/frames.ts';

const GUEST_LIMITS: FrameLimits = { maxHeader: MAX_HEADER_BYTES, maxPayload: MAX_PAYLOAD_BYTES };

/** Encodes one frame as the buffers to write, in order (the payload is not copied); throws FrameTooLarge past the limits. */
export const encodeFrame = (header: object, payload?: Uint8Array): Buffer[] => encodeWith(GUEST_LIMITS, header, payload);

export class FrameDecoder extends LengthPrefixedDecoder {
  constructor() {
    super(GUEST_LIMITS);
  }
}
