/**
 * Decompression of the LZ4 "legacy" frames Linux uses for an LZ4-compressed
 * kernel (Debian's cloud kernel is one). QEMU boots the uncompressed ELF
 * directly (PVH), which saves the guest from decompressing itself under
 * software emulation; Node has no LZ4, and the format is small enough to read
 * here rather than depend on a host tool.
 */

const LEGACY_MAGIC = 0x184c2102;
/** A legacy block never decompresses to more than 8 MiB. */
const MAX_BLOCK = 8 << 20;

/** True when `buf` starts with the LZ4 legacy frame magic. */
export const isLz4Legacy = (buf: Uint8Array): boolean => buf.byteLength >= 4 && readU32(buf, 0) === LEGACY_MAGIC;

/** Decompresses a legacy frame; bytes after the last block (the kernel build appends the size) are ignored. */
export function decompressLz4Legacy(buf: Uint8Array): Buffer {
  if (!isLz4Legacy(buf)) throw new Error('not an LZ4 legacy frame');
  const out: Buffer[] = [];
  let pos = 4;
  while (pos + 4 <= buf.byteLength) {
    const size = readU32(buf, pos);
    if (size === LEGACY_MAGIC) {
      pos += 4; // concatenated frames
      continue;
    }
    // What is left cannot hold a block of that size: it is the trailer, not a block.
    if (size === 0 || pos + 4 + size > buf.byteLength) break;
    out.push(decompressBlock(buf.subarray(pos + 4, pos + 4 + size)));
    pos += 4 + size;
  }
  return Buffer.concat(out);
}

function decompressBlock(src: Uint8Array): Buffer {
  const dst = Buffer.allocUnsafe(MAX_BLOCK);
  let ip = 0;
  let op = 0;
  for (;;) {
    const token = src[ip++];
    let literals = token >>> 4;
    if (literals === 15) {
      let b: number;
      do {
        b = src[ip++];
        literals += b;
      } while (b === 255);
    }
    if (ip + literals > src.byteLength || op + literals > MAX_BLOCK) throw new Error('corrupt LZ4 block (literals)');
    dst.set(src.subarray(ip, ip + literals), op);
    ip += literals;
    op += literals;
    if (ip >= src.byteLength) break; // the last sequence has literals only
    const offset = src[ip] | (src[ip + 1] << 8);
    ip += 2;
    let match = token & 15;
    if (match === 15) {
      let b: number;
      do {
        b = src[ip++];
        match += b;
      } while (b === 255);
    }
    match += 4;
    if (offset === 0 || offset > op || op + match > MAX_BLOCK) throw new Error('corrupt LZ4 block (match)');
    let from = op - offset;
    if (offset >= match) {
      dst.copyWithin(op, from, from + match);
      op += match;
    } else {
      // Overlapping: the match repeats bytes it is itself writing.
      for (let i = 0; i < match; i++) dst[op++] = dst[from++];
    }
  }
  return dst.subarray(0, op);
}

function readU32(buf: Uint8Array, at: number): number {
  return (buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)) >>> 0;
}
