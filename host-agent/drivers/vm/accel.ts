/**
 * KVM or software emulation (TCG), decided by booting a tiny guest — the
 * real kernel with a probe initramfs that prints a line and powers off — not
 * by the presence of /dev/kvm: some hosts have a /dev/kvm that cannot run a
 * stock guest (KVM without hardware virtualization, e.g. nested under a PVM
 * hypervisor), where QEMU aborts at once or the guest crawls and never boots.
 * KVM must boot the probe within a deadline; otherwise every VM of this agent
 * runs under TCG, which must boot it too or the VM driver is not available.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import { buildPath, publish } from './build-dir.ts';
import { cpioArchive } from './cpio.ts';
import type { GuestKernel } from './kernel.ts';
import { imagesDir } from './paths.ts';
import { kernelArgs, kernelImage, machineArgs } from './qemu-args.ts';
import { QEMU_BINARY } from './qemu.ts';

export type Accel = 'kvm' | 'tcg';

export interface AccelChoice {
  accel: Accel;
  /** One sentence for the log: why this one. */
  reason: string;
  /** How long the probe guest took from QEMU's start to its power-off. */
  probe_ms: number;
}

const MARKER = 'HANGAR-PROBE-OK';
/** A working KVM boots the probe in well under a second; a crawling one never does. */
const KVM_DEADLINE_MS = 10_000;
/** TCG boots it in about two seconds on an idle core; generous for a loaded host. */
const TCG_DEADLINE_MS = 90_000;

const PROBE_INIT = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo "${MARKER} $(/bin/busybox cat /proc/uptime)"
/bin/busybox poweroff -f
`;

export async function chooseAccel(kernel: GuestKernel, dataDir: string, busybox: Buffer): Promise<AccelChoice> {
  const initrd = probeImage(dataDir, busybox);
  let kvmFailure: string;
  if (!kvmUsable()) {
    kvmFailure = 'no usable /dev/kvm';
  } else {
    const kvm = await bootProbe('kvm', kernel, initrd, KVM_DEADLINE_MS);
    if (kvm.ok) return { accel: 'kvm', reason: 'KVM booted the probe guest', probe_ms: kvm.ms };
    kvmFailure = `KVM could not boot the probe guest (${kvm.why})`;
  }
  const tcg = await bootProbe('tcg', kernel, initrd, TCG_DEADLINE_MS);
  if (!tcg.ok) throw new DriverError('FAILED', `QEMU cannot boot a guest on this host: ${kvmFailure}; software emulation: ${tcg.why}`);
  return { accel: 'tcg', reason: `${kvmFailure}; using software emulation (TCG)`, probe_ms: tcg.ms };
}

function kvmUsable(): boolean {
  try {
    fs.closeSync(fs.openSync('/dev/kvm', 'r+'));
    return true;
  } catch {
    return false;
  }
}

/** The probe's initramfs: busybox and a three-line init. */
function probeImage(dataDir: string, busybox: Buffer): string {
  const hash = createHash('sha256').update(busybox).update(PROBE_INIT).digest('hex').slice(0, 16);
  const final = path.join(imagesDir(dataDir), `probe-${hash}.cpio`);
  if (fs.existsSync(final)) return final;
  fs.mkdirSync(path.dirname(final), { recursive: true });
  const tmp = buildPath(final);
  fs.writeFileSync(
    tmp,
    cpioArchive([
      { path: 'bin', type: 'dir' },
      { path: 'dev', type: 'dir' },
      { path: 'proc', type: 'dir' },
      { path: 'dev/console', type: 'char', major: 5, minor: 1 },
      { path: 'bin/busybox', type: 'file', data: busybox, mode: 0o755 },
      { path: 'init', type: 'file', data: Buffer.from(PROBE_INIT), mode: 0o755 },
    ]),
  );
  publish(tmp, final);
  return final;
}

interface ProbeResult {
  ok: boolean;
  ms: number;
  why: string;
}

function bootProbe(accel: Accel, kernel: GuestKernel, initrd: string, deadlineMs: number): Promise<ProbeResult> {
  const started = Date.now();
  const args = [...machineArgs(accel, { kernel: kernelImage(kernel, accel), initrd }, kernelArgs(accel), 1, 256), '-serial', 'stdio'];
  return new Promise((resolve) => {
    const child = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (d: Buffer) => (out = (out + d.toString('utf8')).slice(-8192));
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ ok: false, ms: Date.now() - started, why: `QEMU could not start: ${e.message}` });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Date.now() - started;
      if (code === 0 && out.includes(MARKER)) return resolve({ ok: true, ms, why: '' });
      const tail = out.trim().split('\n').filter((l) => l.trim()).slice(-2).join(' | ').slice(0, 300);
      const how = signal === 'SIGKILL' ? `no boot within ${Math.round(deadlineMs / 1000)} s` : `QEMU ${signal ?? `exit ${code}`}`;
      resolve({ ok: false, ms, why: tail ? `${how}: ${tail}` : how });
    });
  });
}
