/**
 * Making the test stack's host agent lose its connections on purpose: SIGUSR2
 * drops every socket as a network failure would (they redial with jittered
 * backoff); `offline` keeps it away for as long as a test needs.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { hangar } from './client.ts';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Drops every connection of the agent; they come back by themselves. */
export const dropAgentSockets = (): void => {
  process.kill(hangar().agentPid, 'SIGUSR2');
};

/** Established TCP connections from process `pid` to `port` on loopback, read from /proc. */
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

/**
 * Drops the agent's sockets and freezes it (SIGSTOP) before it can redial —
 * its first retry waits at least 50 ms — so the server sees no agent until
 * the returned function resumes it. Retries when a redial slips in first.
 */
export async function agentOffline(): Promise<() => void> {
  const { agentPid, origin } = hangar();
  const port = Number(new URL(origin).port);
  for (let attempt = 0; attempt < 5; attempt++) {
    process.kill(agentPid, 'SIGUSR2');
    const deadline = Date.now() + 5_000;
    while (connectionsTo(agentPid, port) > 0) {
      if (Date.now() > deadline) throw new Error('the agent kept its connections after SIGUSR2');
      await sleep(1);
    }
    process.kill(agentPid, 'SIGSTOP');
    if (connectionsTo(agentPid, port) === 0) return () => process.kill(agentPid, 'SIGCONT');
    process.kill(agentPid, 'SIGCONT');
    await sleep(200);
  }
  throw new Error('could not catch the agent between its drop and its redial');
}
