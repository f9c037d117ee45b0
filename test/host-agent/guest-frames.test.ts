import { describe, expect, it } from 'vitest';
import { FrameDecoder, encodeFrame } from '../../host-agent/guest-frames.ts';

const wire = (header: object, payload?: Uint8Array) => Buffer.concat(encodeFrame(header, payload));

describe('guest frame codec', () => {
  it('round-trips a header with a raw binary payload', () => {
    const payload = Buffer.from([0, 1, 2, 255, 254]);
    const [frame] = new FrameDecoder().push(wire({ t: 'evt', n: 1 }, payload));
    expect(frame.header).toEqual({ t: 'evt', n: 1 });
    expect(Buffer.compare(frame.payload, payload)).toBe(0);
  });

  it('reassembles frames split at every byte boundary and several frames in one read', () => {
    const bytes = Buffer.concat([wire({ a: 1 }), wire({ b: 2 }, Buffer.from('xyz')), wire({ c: 'é' })]);
    const decoder = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < bytes.length; i++) frames.push(...decoder.push(bytes.subarray(i, i + 1)));
    expect(frames.map((f) => f.header)).toEqual([{ a: 1 }, { b: 2 }, { c: 'é' }]);
    expect(frames[1].payload.toString()).toBe('xyz');
    expect(new FrameDecoder().push(bytes)).toHaveLength(3);
  });

  it('carries a 10 MiB payload arriving in 64 KiB reads', () => {
    const payload = Buffer.alloc(10 << 20, 7);
    const bytes = wire({ big: true }, payload);
    const decoder = new FrameDecoder();
    const frames = [];
    for (let i = 0; i < bytes.length; i += 65536) frames.push(...decoder.push(bytes.subarray(i, i + 65536)));
    expect(frames).toHaveLength(1);
    expect(frames[0].payload.length).toBe(10 << 20);
  });

  it('refuses a frame announcing an oversized header', () => {
    const bad = Buffer.alloc(8);
    bad.writeUInt32BE(64 << 20, 0);
    expect(() => new FrameDecoder().push(bad)).toThrow(/malformed/);
  });
});
