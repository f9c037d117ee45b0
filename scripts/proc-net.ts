/** What a local process has open on the network, read from /proc (Linux). */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

/** Inodes of the sockets process `pid` holds. */
function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      /* closed meanwhile */
    }
  }
  return inodes;
}

/** Rows of /proc/<pid>/net/tcp{,6} that belong to the process: [local, remote, state, inode]. */
function tcpRows(pid: number, tables: string[]): { localPort: number; remotePort: number; state: string }[] {
  const inodes = socketInodes(pid);
  const out = [];
  for (const table of tables) {
    const rows = readFileSync(`/proc/${pid}/net/${table}`, 'utf8').trim().split('\n').slice(1);
    for (const row of rows) {
      const f = row.trim().split(/\s+/);
      if (!inodes.has(f[9])) continue;
      out.push({ localPort: parseInt(f[1].split(':')[1], 16), remotePort: parseInt(f[2].split(':')[1], 16), state: f[3] });
    }
  }
  return out;
}

/** Established TCP connections from process `pid` to `port` on this host. */
export function connectionsTo(pid: number, port: number): number {
  return tcpRows(pid, ['tcp', 'tcp6']).filter((r) => r.state === '01' && r.remotePort === port).length;
}

/** Ports process `pid` listens on (IPv4). */
export function listeningPorts(pid: number): number[] {
  return tcpRows(pid, ['tcp']).filter((r) => r.state === '0A').map((r) => r.localPort);
}
