/**
 * CPU a process spends on a piece of work (user + system, from /proc), and a
 * stand-in for the work the object would do if it spoke HTTP itself: decoding
 * a chunked HTTP/1.1 body in JavaScript. Together they decide where HTTP is
 * spoken (docs/relay.md).
 */
import { readFileSync } from 'node:fs';

const TICK = 100; // USER_HZ on Linux

/** CPU seconds a process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK;
}

/** CPU milliseconds per MiB that decoding `mib` MiB of chunked transfer-coding (64 KiB chunks) costs in this process. */
export function chunkedDecodeMsPerMib(mib: number): number {
  const chunk = new Uint8Array(64 * 1024).fill(97);
  const head = new TextEncoder().encode(`${chunk.byteLength.toString(16)}\r\n`);
  const crlf = new TextEncoder().encode('\r\n');
  // The wire form of one chunk, as reads of 16 KiB would deliver it.
  const wire = new Uint8Array(head.byteLength + chunk.byteLength + 2);
  wire.set(head, 0);
  wire.set(chunk, head.byteLength);
  wire.set(crlf, head.byteLength + chunk.byteLength);
  const t0 = process.cpuUsage();
  let out = 0;
  for (let i = 0; i < mib * 16; i++) {
    let state: 'size' | 'data' | 'crlf' = 'size';
    let size = 0;
    let left = 0;
    for (let at = 0; at < wire.byteLength; at += 16 * 1024) {
      const read = wire.subarray(at, at + 16 * 1024);
      let p = 0;
      while (p < read.byteLength) {
        if (state === 'size') {
          const c = read[p++];
          if (c === 13) continue;
          if (c === 10) {
            state = 'data';
            left = size;
            continue;
          }
          size = size * 16 + (c <= 57 ? c - 48 : (c | 32) - 87);
        } else if (state === 'data') {
          const n = Math.min(left, read.byteLength - p);
          out += read.subarray(p, p + n).byteLength;
          p += n;
          left -= n;
          if (left === 0) state = 'crlf';
        } else {
          if (read[p++] === 10) {
            state = 'size';
            size = 0;
          }
        }
      }
    }
  }
  const used = process.cpuUsage(t0);
  if (out !== mib * 1048576) throw new Error(`decoded ${out} bytes`);
  return (used.user + used.system) / 1000 / mib;
}
