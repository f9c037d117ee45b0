/**
 * CPU a process spends on a piece of work (user + system, from /proc), and a
 * stand-in for the work the object would do if it spoke HTTP itself: decoding
 * a chunked HTTP/1.1 body in JavaScript. Together they decide where HTTP is
 * spoken (docs/relay.md).
 */
import { readFileSync, readdirSync } from 'node:fs';

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

interface Proc {
  ppid: number;
  cpu: number;
  cmd: string;
  cgroup: string;
}

function processes(): Map<number, Proc> {
  const out = new Map<number, Proc>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      const cgroup = readFileSync(`/proc/${d}/cgroup`, 'utf8');
      out.set(Number(d), { ppid: Number(f[1]), cpu: (Number(f[11]) + Number(f[12])) / TICK, cmd, cgroup });
    } catch {
      /* gone */
    }
  }
  return out;
}

/**
 * CPU seconds of every process under `roots` (the dev server, the agent)
 * and in the cgroups `groups` name (a computer's processes live in
 * `/hangar/<id>`, not under the agent that started them), summed by role:
 * which hop of the relay spends what. `label` names a process by its role
 * (its root's or group's name when it returns null).
 */
export function cpuByRole(roots: Record<string, number>, groups: Record<string, string>, label: (pid: number, cmd: string) => string | null): Map<string, number> {
  const all = processes();
  const rootOf = (pid: number): string | null => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = all.get(p)?.ppid ?? 0, hops++) {
      for (const [name, root] of Object.entries(roots)) if (root === p) return name;
    }
    return null;
  };
  const out = new Map<string, number>();
  for (const [pid, p] of all) {
    const root = rootOf(pid) ?? Object.entries(groups).find(([, g]) => p.cgroup.includes(`${g}\n`))?.[0] ?? null;
    if (root === null) continue;
    const role = label(pid, p.cmd) ?? root;
    out.set(role, (out.get(role) ?? 0) + p.cpu);
  }
  return out;
}
