/**
 * Outbound network of a computer: pasta (Debian `passt`) in the sandbox's
 * network namespace, relaying its traffic through host sockets.
 *
 * No inbound and no host loopback: `-t/-u/-T/-U none` turn off pasta's port
 * forwarding in both directions and `--no-map-gw` stops the gateway address
 * from leading to the host's own 127.0.0.1 services (the host agent, other
 * computers' guests). The computer reaches what the host reaches outward.
 *
 * pasta runs as the first uid of the computer's range (`--runas`), the owner
 * of its user namespace, which lets it join that namespace and then the
 * network namespace inside it: on the host it is an unprivileged process of
 * that computer, never root. It stays in the foreground (its pid is the one we
 * start, and it lives in the computer's cgroup, so stop ends it); the network
 * is ready once the namespace has its default route.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { DNS_FORWARD_ADDR } from './host-config.ts';

const READY_TIMEOUT_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Starts pasta for the namespaces of `nsPid` (a sandbox's, or the one a VM's passt runs in), as
 * `uid`, their owner; its log goes to `dir`. Resolves with pasta's pid once routes exist.
 */
export async function attachNetwork(nsPid: number, uid: number, dir: string, dnsForward: boolean): Promise<number> {
  const logFile = path.join(dir, 'pasta.log');
  const args = [
    '--config-net', '--quiet', '--foreground', '--runas', `${uid}:${uid}`,
    '-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none', '--no-map-gw',
    '--userns', `/proc/${nsPid}/ns/user`,
    '--netns', `/proc/${nsPid}/ns/net`,
    // It is ended with the computer instead (a sandbox's cgroup is emptied; a VM's pasta is killed with its passt).
    '--no-netns-quit',
  ];
  if (dnsForward) args.push('--dns-forward', DNS_FORWARD_ADDR);
  const log = fs.openSync(logFile, 'a', 0o600);
  let exited: string | null = null;
  let pid: number | undefined;
  try {
    const child = spawn('pasta', args, { detached: true, stdio: ['ignore', log, log] });
    child.on('error', (e) => (exited = e.message));
    child.on('exit', (code, signal) => (exited = `pasta exited (${signal ?? `code ${code}`})`));
    child.unref();
    pid = child.pid;
  } finally {
    fs.closeSync(log);
  }
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (exited || !pid) throw new DriverError('FAILED', `the computer's network did not come up: ${exited ?? 'pasta did not start'}: ${tail(logFile)}`);
    if (hasDefaultRoute(nsPid)) return pid;
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
      throw new DriverError('FAILED', `the computer's network did not come up within ${READY_TIMEOUT_MS / 1000} s: ${tail(logFile)}`);
    }
    await sleep(5);
  }
}

/** Whether the namespace of `pid` has a default route (IPv4, or IPv6 on a host without IPv4). */
function hasDefaultRoute(pid: number): boolean {
  const routes = defaultRoutes(pid);
  return routes.v4 || routes.v6;
}

/** Which address families have a default route in the network namespace of `pid` (`self`: the agent's own). */
export function defaultRoutes(pid: number | 'self'): { v4: boolean; v6: boolean } {
  return {
    v4: readOr(`/proc/${pid}/net/route`)
      .split('\n')
      .slice(1)
      .some((line) => line.split(/\s+/)[1] === '00000000'),
    v6: readOr(`/proc/${pid}/net/ipv6_route`)
      .split('\n')
      .some((line) => line.startsWith('00000000000000000000000000000000 00 ') && !line.trimEnd().endsWith(' lo')),
  };
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function tail(file: string): string {
  return readOr(file).trim().split('\n').slice(-3).join(' | ') || 'no pasta log';
}
