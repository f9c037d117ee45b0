/** Reading PNGs in tests: size, and the pixels of 8-bit RGB/RGBA images (what the desktop sends). */
import { inflateSync } from 'node:zlib';

export interface Png {
  width: number;
  height: number;
  /** Bytes per pixel: 3 (RGB) or 4 (RGBA). */
  channels: number;
  pixels: Uint8Array;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const b = Buffer.from(bytes);
  if (!b.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

export function decodePng(bytes: Uint8Array): Png {
  const b = Buffer.from(bytes);
  const { width, height } = pngSize(b);
  const depth = b[24];
  const colorType = b[25];
  if (depth !== 8 || (colorType !== 2 && colorType !== 6)) throw new Error(`unsupported PNG (depth ${depth}, color type ${colorType})`);
  const channels = colorType === 6 ? 4 : 3;
  const idat: Buffer[] = [];
  for (let at = 8; at < b.length; ) {
    const len = b.readUInt32BE(at);
    const type = b.toString('latin1', at + 4, at + 8);
    if (type === 'IDAT') idat.push(b.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const pixels = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[y * stride + x - channels] : 0;
      const up = y > 0 ? pixels[(y - 1) * stride + x] : 0;
      const ul = y > 0 && x >= channels ? pixels[(y - 1) * stride + x - channels] : 0;
      let v = line[x];
      if (filter === 1) v += a;
      else if (filter === 2) v += up;
      else if (filter === 3) v += (a + up) >> 1;
      else if (filter === 4) {
        const p = a + up - ul;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - up);
        const pc = Math.abs(p - ul);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? up : ul;
      }
      pixels[y * stride + x] = v & 0xff;
    }
  }
  return { width, height, channels, pixels };
}

/** The [r, g, b] of a pixel. */
export function pixel(png: Png, x: number, y: number): [number, number, number] {
  const at = (y * png.width + x) * png.channels;
  return [png.pixels[at], png.pixels[at + 1], png.pixels[at + 2]];
}

/** How many pixels differ between two images of the same size. */
export function changedPixels(a: Png, b: Png): number {
  let n = 0;
  for (let i = 0; i < a.width * a.height; i++) {
    const p = i * a.channels;
    const q = i * b.channels;
    if (a.pixels[p] !== b.pixels[q] || a.pixels[p + 1] !== b.pixels[q + 1] || a.pixels[p + 2] !== b.pixels[q + 2]) n++;
  }
  return n;
}

/** How many colours a grid of points `step` pixels apart meets: a blank frame has one, a drawn desktop (panel, background, icons) several. */
export function gridColours(png: Png, step = 40): number {
  const seen = new Set<string>();
  for (let y = 0; y < png.height; y += step) {
    for (let x = 0; x < png.width; x += step) {
      const at = (y * png.width + x) * png.channels;
      seen.add(png.pixels.subarray(at, at + 3).join(','));
    }
  }
  return seen.size;
}
