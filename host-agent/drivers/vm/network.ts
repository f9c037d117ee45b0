/**
 * A VM's network: passt (Debian `passt`, the same program the sandbox uses
 * as pasta) relaying the traffic of QEMU's virtio-net through host sockets:
 * outbound works as from the host; no port is forwarded inward (`-t none
 * -u none`); `--no-map-gw` keeps the gateway address from leading to the
 * host's own loopback services (the host agent, other computers' channels).
 * It hands the guest its address by DHCP.
 *
 * passt and QEMU talk over a connected pair of unix sockets made here and
 * handed to each as descriptor 3, so no socket file exists that another
 * process could reach, and passt — which drops to `nobody` — needs no
 * directory of its own. It ends when QEMU closes its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { DNS_FORWARD_ADDR } from '../sandbox/host-config.ts';
import type { VmPaths } from './paths.ts';

/** The descriptor number each side finds its end of the pair at. */
export const NET_FD = 3;

/** Starts passt on one end of a new socket pair; returns it and QEMU's end (to pass as NET_FD, then destroy). */
export async function startPasst(paths: VmPaths, dnsForward: boolean): Promise<{ passt: ChildProcess; qemuEnd: net.Socket }> {
  const [passtEnd, qemuEnd] = await socketPair(path.join(paths.dir, 'pair.sock'));
  const args = [
    '--foreground', '--quiet',
    '--fd', String(NET_FD),
    // Opened before passt becomes `nobody`, in the computer's root-only directory.
    '--log-file', paths.passtLog,
    '-t', 'none', '-u', 'none', '--no-map-gw',
  ];
  if (dnsForward) args.push('--dns-forward', DNS_FORWARD_ADDR);
  let passt: ChildProcess;
  try {
    passt = spawn('passt', args, { detached: true, stdio: ['ignore', 'ignore', 'ignore', passtEnd] });
  } finally {
    passtEnd.destroy();
  }
  passt.unref();
  if (!passt.pid) {
    qemuEnd.destroy();
    throw new DriverError('FAILED', 'passt could not start: is Debian `passt` installed?');
  }
  return { passt, qemuEnd };
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
