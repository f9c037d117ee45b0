/**
 * A VM's network: passt (Debian `passt`, the same program the sandbox uses
 * as pasta) relaying the traffic of QEMU's virtio-net through sockets:
 * outbound works as from the host; no port is forwarded inward (`-t none
 * -u none`); `--no-map-gw` keeps the gateway address from leading to the
 * host's own loopback services (the host agent, other computers' channels).
 * It hands the guest its address by DHCP.
 *
 * passt gives the guest the host's own addresses, and connects on the guest's
 * behalf to wherever the guest sends. Root inside a VM owns its kernel: it can
 * drop those addresses and send to them, and passt on the host's network would
 * then connect to the host's own services (measured: a listener on the host's
 * IPv6 address answered). So passt does not run in the host's network: it runs
 * in a network namespace of its own, which pasta connects outward exactly as it
 * connects a sandbox. There the host's addresses are the namespace's own and
 * lead nowhere; everything else goes out through pasta as the host's traffic.
 * Both run as `nobody` (in the namespace passt is its user namespace's root,
 * which is `nobody` on the host).
 *
 * The guest still holds the addresses passt gives it, so that its own traffic
 * to them stays inside: IPv4 comes by DHCP; IPv6 would come by DHCPv6, which
 * the guest's busybox has no client for, so the host names it on the kernel
 * command line (`hangar.ip6`).
 *
 * passt and QEMU talk over a connected pair of unix sockets made here and
 * handed to each as descriptor 3, so no socket file exists that another
 * process could reach. passt ends when QEMU closes its end; pasta is ended
 * with it (killNetwork in qemu.ts), since it holds the namespace open.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { attachNetwork, defaultRoutes } from '../sandbox/network.ts';
import type { VmPaths } from './paths.ts';

/** The descriptor number each side finds its end of the pair at. */
export const NET_FD = 3;

/** Debian's `nobody`/`nogroup`: the host user passt and pasta run as. */
const NET_UID = 65534;
const NAMESPACE_TIMEOUT_MS = 10_000;

export interface VmNetwork {
  /** passt, in its namespace (its pid is the namespace's first process). */
  passt: ChildProcess;
  pastaPid: number;
  /** QEMU's end of the pair: pass it as NET_FD, then destroy it. */
  qemuEnd: net.Socket;
}

/** Starts the VM's network: a namespace pasta connects outward, then passt in it on one end of a new socket pair. */
export async function startNetwork(paths: VmPaths, dnsForward: boolean): Promise<VmNetwork> {
  const [passtEnd, qemuEnd] = await socketPair(path.join(paths.dir, 'pair.sock'));
  await widenSendBuffer(passtEnd, paths.passtLog);
  const passtArgs = ['--foreground', '--quiet', '--fd', String(NET_FD), '-t', 'none', '-u', 'none', '--no-map-gw'];
  const log = fs.openSync(paths.passtLog, 'a', 0o600);
  let passt: ChildProcess;
  try {
    // The namespace's first process waits until pasta has connected it: passt reads the
    // addresses and routes it hands the guest when it starts.
    passt = spawn('unshare', ['--user', '--map-root-user', '--net', '--', 'sh', '-c', 'read go && exec passt "$@"', 'passt', ...passtArgs], {
      detached: true,
      uid: NET_UID,
      gid: NET_UID,
      stdio: ['pipe', log, log, passtEnd],
    });
  } finally {
    passtEnd.destroy();
    fs.closeSync(log);
  }
  passt.on('error', () => undefined); // reported below, by its missing pid or by pasta failing to join it
  passt.unref();
  if (!passt.pid) {
    qemuEnd.destroy();
    throw new DriverError('FAILED', 'the network of the VM could not start: are util-linux `unshare` and Debian `passt` installed?');
  }
  let pastaPid: number;
  try {
    await inOwnNamespaces(passt.pid);
    pastaPid = await attachNetwork(passt.pid, NET_UID, paths.dir, dnsForward);
  } catch (err) {
    killQuietly(passt.pid);
    qemuEnd.destroy();
    throw err;
  }
  try {
    await routedLikeHost(passt.pid);
  } catch (err) {
    killQuietly(passt.pid);
    killQuietly(pastaPid);
    qemuEnd.destroy();
    throw err;
  }
  passt.stdin!.end('go\n');
  return { passt, pastaPid, qemuEnd };
}

/**
 * Resolves once `unshare` has made the namespaces and exec'd the shell that waits: before that, its
 * /proc entries still lead to the host's own namespaces, which pasta must never be pointed at.
 */
async function inOwnNamespaces(pid: number): Promise<void> {
  const deadline = Date.now() + NAMESPACE_TIMEOUT_MS;
  for (;;) {
    let comm = '';
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      throw new DriverError('FAILED', "the VM's network namespace could not be made: `unshare` exited (does this kernel allow user namespaces?)");
    }
    if (comm === 'sh' && fs.readlinkSync(`/proc/${pid}/ns/net`) !== fs.readlinkSync('/proc/self/ns/net')) return;
    if (Date.now() > deadline) throw new DriverError('FAILED', `the VM's network namespace was not made within ${NAMESPACE_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Resolves once the namespace has a default route for each family the host has one for. pasta
 * sets them up one after the other, and passt, which reads them once when it starts, would give
 * the guest no network of a family still missing (it refuses to start with none).
 */
async function routedLikeHost(pid: number): Promise<void> {
  const host = defaultRoutes('self');
  const deadline = Date.now() + NAMESPACE_TIMEOUT_MS;
  for (;;) {
    const ns = defaultRoutes(pid);
    if ((!host.v4 || ns.v4) && (!host.v6 || ns.v6)) return;
    if (Date.now() > deadline) throw new DriverError('FAILED', `the VM's network namespace got no ${host.v4 && !ns.v4 ? 'IPv4' : 'IPv6'} route within ${NAMESPACE_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

/**
 * The IPv6 address passt hands a guest, with its prefix length: the first global address of the
 * interface the host's IPv6 default route leaves by. Null when the host has no IPv6 default route
 * (passt then gives the guest no IPv6 at all).
 */
export function passtIpv6(): string | null {
  let routes: string;
  try {
    routes = fs.readFileSync('/proc/net/ipv6_route', 'utf8');
  } catch {
    return null;
  }
  // Fields: destination, its prefix length (hex), source, its length, next hop, metric, refs, use, flags, device.
  const device = routes
    .split('\n')
    .map((line) => line.trim().split(/\s+/))
    .find((f) => f.length >= 10 && /^0{32}$/.test(f[0]!) && f[1] === '00' && f[9] !== 'lo')?.[9];
  if (!device) return null;
  const address = os.networkInterfaces()[device]?.find((a) => a.family === 'IPv6' && !a.internal && !/^fe80:/i.test(a.address));
  return address?.cidr ?? null;
}

/** The kernel argument naming the guest's IPv6 address (none when passt gives it none). */
export function guestIpv6Args(): string[] {
  const ip6 = passtIpv6();
  return ip6 ? [`hangar.ip6=${ip6}`] : [];
}

/**
 * What passt may queue towards QEMU before a write of its comes up short. passt (Debian 12's,
 * 2023-03) writes frames to QEMU without waiting and drops what a short write left over: the
 * stream then carries half a frame, QEMU reads the next frame's bytes as a length, logs
 * "oversized packet received, connection terminated" and the VM has no network until it stops.
 * A VM under software emulation drains its network slowly, so with the kernel's default buffer
 * (208 KiB, a few 64 KiB frames) a second large download did that every time. passt would widen
 * the buffer itself, but only as far as net.core.wmem_max allows, which is 208 KiB by default.
 * The kernel doubles the number given.
 */
const PASST_SEND_BUFFER = 32 << 20;

/**
 * Sets passt's end's send buffer past net.core.wmem_max (SO_SNDBUFFORCE, which needs the
 * agent's CAP_NET_ADMIN, hence done here and not by passt). Node has no setsockopt; perl-base is
 * in every Debian. A failure is logged in passt's log and the VM starts anyway: its network works,
 * only large downloads may stall as described above.
 */
async function widenSendBuffer(sock: net.Socket, logPath: string): Promise<void> {
  const script = `open(my $s, "+<&=", 3) or die "fd 3: $!\\n"; setsockopt($s, 1, 32, pack("i", ${PASST_SEND_BUFFER})) or die "SO_SNDBUFFORCE: $!\\n";`;
  const log = fs.openSync(logPath, 'a', 0o600);
  try {
    const perl = spawn('perl', ['-e', script], { stdio: ['ignore', 'ignore', log, sock] });
    const code = await new Promise<number | null>((resolve) => {
      perl.once('error', () => resolve(null));
      perl.once('exit', (c) => resolve(c));
    });
    if (code !== 0) fs.appendFileSync(logPath, `hangar: could not widen passt's send buffer (perl ${code === null ? 'not found' : `exited ${code}`}); large downloads in this VM may stall\n`);
  } finally {
    fs.closeSync(log);
  }
}

/** A connected pair of unix stream sockets (Node has no socketpair(2)): a listener that lives for one accept. */
function socketPair(at: string): Promise<[net.Socket, net.Socket]> {
  fs.rmSync(at, { force: true });
  return new Promise((resolve, reject) => {
    const server = net.createServer({ pauseOnConnect: true });
    const fail = (err: Error) => {
      server.close();
      fs.rmSync(at, { force: true });
      reject(new DriverError('FAILED', `cannot make the VM's network socket pair: ${err.message}`));
    };
    server.once('error', fail);
    server.once('connection', (accepted) => {
      server.close();
      fs.rmSync(at, { force: true });
      accepted.pause();
      resolve([accepted, client]);
    });
    let client: net.Socket;
    server.listen(at, () => {
      client = net.createConnection({ path: at });
      client.pause();
      client.once('error', fail);
    });
  });
}
