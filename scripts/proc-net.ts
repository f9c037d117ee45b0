/** What a local process is connected to, read from /proc (Linux). */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Established TCP connections from process `pid` to `port` on this host. */
export function connectionsTo(pid: number, port: number): number {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  let n = 0;
  for (const table of ['tcp', 'tcp6']) {
    const rows = readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1);
    for (const row of rows) {
      const f = row.trim().split(/\s+/);
      const remotePort = parseInt(f[2].split(':')[1], 16);
      if (f[3] === '01' && remotePort === port && inodes.has(f[9])) n++;
    }
  }
  return n;
}
