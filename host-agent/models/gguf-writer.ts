/**
 * A writer of GGUF files (version 3), the model format llama.cpp and the
 * servers built on it load: a header, typed metadata, tensor descriptions,
 * then the tensors' bytes, each aligned. Only what a small float32 model needs
 * is here: scalar, string and array metadata, and float32 tensors.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';

/** GGUF metadata value types (the numbers are the format's). */
const T = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

/** A metadata value, tagged with its GGUF type so a number is never guessed. */
export type MetaValue =
  | { u32: number }
  | { i32: number }
  | { f32: number }
  | { bool: boolean }
  | { string: string }
  | { strings: string[] }
  | { f32s: Float32Array | number[] }
  | { i32s: Int32Array | number[] };

/** A float32 tensor; `dims` in GGUF order, innermost (contiguous) first. */
export interface Tensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

const ALIGNMENT = 32;
const GGML_TYPE_F32 = 0;

/** Grows a byte buffer as little-endian values are appended. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void {
    this.room(4);
    this.length = this.buf.writeUInt32LE(v, this.length);
  }
  i32(v: number): void {
    this.room(4);
    this.length = this.buf.writeInt32LE(v, this.length);
  }
  u64(v: number): void {
    this.room(8);
    this.length = this.buf.writeBigUInt64LE(BigInt(v), this.length);
  }
  f32(v: number): void {
    this.room(4);
    this.length = this.buf.writeFloatLE(v, this.length);
  }
  u8(v: number): void {
    this.room(1);
    this.length = this.buf.writeUInt8(v, this.length);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.room(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(to: number): void {
    while (this.length % to !== 0) this.u8(0);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(out: Bytes, v: MetaValue): void {
  if ('u32' in v) {
    out.u32(T.u32);
    out.u32(v.u32);
  } else if ('i32' in v) {
    out.u32(T.i32);
    out.i32(v.i32);
  } else if ('f32' in v) {
    out.u32(T.f32);
    out.f32(v.f32);
  } else if ('bool' in v) {
    out.u32(T.bool);
    out.u8(v.bool ? 1 : 0);
  } else if ('string' in v) {
    out.u32(T.string);
    out.string(v.string);
  } else if ('strings' in v) {
    out.u32(T.array);
    out.u32(T.string);
    out.u64(v.strings.length);
    for (const s of v.strings) out.string(s);
  } else if ('f32s' in v) {
    out.u32(T.array);
    out.u32(T.f32);
    out.u64(v.f32s.length);
    for (const x of v.f32s) out.f32(x);
  } else {
    out.u32(T.array);
    out.u32(T.i32);
    out.u64(v.i32s.length);
    for (const x of v.i32s) out.i32(x);
  }
}

/** The header, metadata and tensor descriptions, padded so the tensor data starts aligned. */
export function ggufHeader(meta: Record<string, MetaValue>, tensors: Tensor[]): Buffer {
  const out = new Bytes();
  out.u32(0x46554747); // "GGUF" read as a little-endian u32
  out.u32(3);
  out.u64(tensors.length);
  out.u64(Object.keys(meta).length);
  for (const [key, value] of Object.entries(meta)) {
    out.string(key);
    writeValue(out, value);
  }
  let offset = 0;
  for (const t of tensors) {
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new Error(`tensor ${t.name}: dims ${t.dims.join('x')} do not match ${t.data.length} values`);
    out.string(t.name);
    out.u32(t.dims.length);
    for (const d of t.dims) out.u64(d);
    out.u32(GGML_TYPE_F32);
    out.u64(offset);
    offset += alignUp(t.data.byteLength);
  }
  out.pad(ALIGNMENT);
  return out.bytes();
}

function alignUp(n: number): number {
  return Math.ceil(n / ALIGNMENT) * ALIGNMENT;
}

/** Writes a GGUF file: header, then each tensor's bytes padded to the alignment. */
export async function writeGguf(file: string, meta: Record<string, MetaValue>, tensors: Tensor[]): Promise<void> {
  const stream = createWriteStream(file);
  const failed = once(stream, 'error').then(([e]) => Promise.reject(e as Error));
  const write = async (b: Uint8Array): Promise<void> => {
    if (!stream.write(b)) await Promise.race([once(stream, 'drain'), failed]);
  };
  await write(ggufHeader(meta, tensors));
  for (const t of tensors) {
    await write(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    const pad = alignUp(t.data.byteLength) - t.data.byteLength;
    if (pad) await write(new Uint8Array(pad));
  }
  stream.end();
  await Promise.race([once(stream, 'finish'), failed]);
}
