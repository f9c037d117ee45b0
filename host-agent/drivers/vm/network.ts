/**
 * A VM's network: passt (Debian `passt`, the same program the sandbox uses
 * as pasta) on a unix socket QEMU's virtio-net connects to. passt relays the
 * guest's traffic through host sockets: outbound works as from the host; no
 * port is forwarded inward (`-t none -u none`); `--no-map-gw` keeps the
 * gateway address from leading to the host's own loopback services (the host
 * agent, other computers' channels). It hands the guest its address by DHCP
 * and quits when QEMU disconnects (`--one-off`).
 *
 * Started as root, passt sheds its capabilities, opens its log file (still
 * uid 0, but without the power to override permissions), then becomes
 * `nobody` and binds its socket and writes its pid. So its directory belongs
 * to `nobody` (mode 0711: root passes through to its own log file, made in
 * advance) and the pid file too.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { DNS_FORWARD_ADDR } from '../sandbox/host-config.ts';
import { runCommand } from '../sandbox/run-command.ts';
import type { VmPaths } from './paths.ts';

/** passt's unprivileged user (Debian's `nobody`). */
function nobody(): { uid: number; gid: number } {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === 'nobody') return { uid: Number(f[2]), gid: Number(f[3]) };
    }
  } catch {
    // fall through
  }
  return { uid: 65534, gid: 65534 };
}

/** Starts passt for a VM about to boot; returns its pid once its socket is listening. */
export async function startPasst(paths: VmPaths, dnsForward: boolean): Promise<number> {
  const { uid, gid } = nobody();
  fs.rmSync(paths.netDir, { recursive: true, force: true });
  // Others may pass through the parent (to reach their own dir), not list it.
  fs.mkdirSync(path.dirname(paths.netDir), { recursive: true, mode: 0o711 });
  fs.mkdirSync(paths.netDir, { mode: 0o711 });
  fs.chmodSync(paths.netDir, 0o711);
  fs.chownSync(paths.netDir, uid, gid);
  fs.writeFileSync(paths.passtLog, '', { mode: 0o600 });
  fs.writeFileSync(paths.passtPid, '', { mode: 0o644 });
  fs.chownSync(paths.passtPid, uid, gid);
  const args = [
    '--quiet', '--one-off',
    '--socket', paths.netSocket,
    '--pid', paths.passtPid,
    '--log-file', paths.passtLog,
    '-t', 'none', '-u', 'none', '--no-map-gw',
  ];
  if (dnsForward) args.push('--dns-forward', DNS_FORWARD_ADDR);
  // passt returns once its socket listens and it has forked into the background.
  await runCommand('passt', args, { timeoutMs: 15_000 });
  const pid = Number(fs.readFileSync(paths.passtPid, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new DriverError('FAILED', 'passt did not report its pid');
  if (!fs.existsSync(paths.netSocket)) throw new DriverError('FAILED', `passt did not create its socket: ${tail(paths.passtLog)}`);
  return pid;
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  } catch {
    return `no log at ${path.basename(file)}`;
  }
}
