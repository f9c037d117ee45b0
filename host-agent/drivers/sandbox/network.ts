/**
 * Outbound network of a computer: pasta (Debian `passt`) joined to the
 * sandbox's network namespace, relaying its traffic through host sockets.
 *
 * No inbound and no host loopback: `-t/-u/-T/-U none` turn off pasta's port
 * forwarding in both directions and `--no-map-gw` stops the gateway address
 * from leading to the host's own 127.0.0.1 services (the host agent, other
 * computers' guests). The computer reaches what the host reaches outward.
 *
 * This pasta (2023-03) drops to `nobody` before opening the target namespace,
 * and as root it lacks CAP_SYS_PTRACE to open /proc/<pid>/ns/net; so the
 * namespace is bind-mounted on a plain file for the moment pasta needs it, and
 * pasta keeps uid 0 (it still sheds every capability but the few it needs and
 * confines itself with its own namespaces and seccomp filter).
 */
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { DNS_FORWARD_ADDR } from './host-config.ts';
import type { ComputerPaths } from './paths.ts';
import { runCommand } from './run-command.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits until `pid` has entered a network namespace of its own (unshare has run). */
async function waitForOwnNetns(pid: number, timeoutMs: number): Promise<void> {
  const hostNs = fs.readlinkSync('/proc/self/ns/net');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ns: string;
    try {
      ns = fs.readlinkSync(`/proc/${pid}/ns/net`);
    } catch {
      throw new DriverError('FAILED', 'the sandbox exited while starting');
    }
    // Attaching pasta before the switch would configure the host's own namespace.
    if (ns !== hostNs) return;
    if (Date.now() > deadline) throw new DriverError('FAILED', 'the sandbox did not create its network namespace');
    await sleep(2);
  }
}

/** Starts pasta for the sandbox whose launcher is `pid`; returns pasta's pid. */
export async function attachNetwork(pid: number, paths: ComputerPaths, dnsForward: boolean): Promise<number> {
  await waitForOwnNetns(pid, 5000);
  const pidFile = path.join(paths.dir, 'pasta.pid');
  fs.rmSync(pidFile, { force: true });
  fs.writeFileSync(paths.netns, '');
  await runCommand('mount', ['--bind', `/proc/${pid}/ns/net`, paths.netns]);
  try {
    const args = [
      '--config-net', '--quiet', '--runas', '0:0',
      '-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none', '--no-map-gw',
      '--log-file', path.join(paths.dir, 'pasta.log'),
      '--pid', pidFile,
      '--netns', paths.netns,
      // The bind mount is removed right after start; pasta must not take that as its cue to quit.
      // It ends with the computer instead: it lives in the computer's cgroup, which stop empties.
      '--no-netns-quit',
    ];
    if (dnsForward) args.push('--dns-forward', DNS_FORWARD_ADDR);
    // pasta returns once the interface is configured and it has forked into the background.
    await runCommand('pasta', args, { timeoutMs: 15_000 });
  } finally {
    // pasta holds the namespace open by fd now; the file only had to exist for it to open.
    await runCommand('umount', ['--lazy', paths.netns]).catch(() => undefined);
    fs.rmSync(paths.netns, { force: true });
  }
  const pastaPid = Number(fs.readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pastaPid) || pastaPid <= 0) throw new DriverError('FAILED', 'pasta did not report its pid');
  return pastaPid;
}
