/**
 * Starting a computer's VM: its network (network.ts), then QEMU, as detached processes that
 * outlive the host agent (their own session; pids and start times in
 * state.json, since a pid alone may be reused), and finding them again.
 *
 * Devices, all virtio on MMIO: three disks (the template's base image
 * read-only, the computer's own disk, the guest agent's image read-only, each
 * named by a serial the VM's init looks for), two serial ports (the guest
 * agent's channel and the control loop's, host ends are QEMU's unix sockets),
 * the network (passt) and an entropy source. (No balloon: QEMU 7.2 cannot
 * restore a memory snapshot of a VM whose balloon reports free pages, and
 * reporting gave back nothing measurable from an idle computer.) The serial
 * console appends to console.log.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { DriverError } from '../driver.ts';
import { processStartTime } from '../sandbox/launch.ts';
import { appendMarker } from '../sandbox/console-log.ts';
import type { Accel } from './accel.ts';
import { NET_FD, guestIpv6Args, startNetwork } from './network.ts';
import type { VmPaths } from './paths.ts';
import { kernelArgs, machineArgs, type BootFiles } from './qemu-args.ts';

export const QEMU_BINARY = 'qemu-system-x86_64';

export interface VmState {
  pid: number;
  /** QEMU's start time in clock ticks since boot (/proc/<pid>/stat field 22). */
  start_time: string;
  passt_pid: number | null;
  passt_start_time: string | null;
  /** The pasta connecting passt's namespace outward (network.ts); absent in a state written before it existed. */
  pasta_pid?: number | null;
  pasta_start_time?: string | null;
  accel: Accel;
  vcpus: number;
  memory_mb: number;
  booted_at: string;
  /** Random per boot; the guest presents it in its hello. */
  boot_id: string;
  /** QEMU's command line: a resume from a memory image must rebuild exactly this machine. */
  argv: string[];
  /** Whether this run resumed from a memory image rather than booting. */
  resumed?: boolean;
}

export interface LaunchConfig {
  id: string;
  paths: VmPaths;
  accel: Accel;
  boot: BootFiles;
  baseImage: string;
  guestImage: string;
  vcpus: number;
  memoryMb: number;
  hostname: string;
  dns: string[];
  search: string[];
  dnsForward: boolean;
}

const SOCKET_WAIT_MS = 30_000;
/** The descriptor a resuming QEMU reads the memory image from (NET_FD is 3). */
const MEMORY_FD = 4;

/** Boots the VM; resolves once QEMU is up with its sockets listening (the guest is still booting). */
export function launchVm(cfg: LaunchConfig): Promise<{ state: VmState; child: ChildProcess }> {
  const bootId = randomBytes(16).toString('hex');
  return startQemu(cfg.paths, { argv: qemuArgs(cfg, bootId), bootId, accel: cfg.accel, vcpus: cfg.vcpus, memoryMb: cfg.memoryMb, dnsForward: cfg.dnsForward });
}

/** Starts the machine of an earlier run (`saved.argv`) loading a memory image (the computer's own by default); the VM stays paused until finishResume. */
export function resumeVm(
  paths: VmPaths,
  saved: Pick<VmState, 'argv' | 'boot_id' | 'accel' | 'vcpus' | 'memory_mb'>,
  dnsForward: boolean,
  image = paths.memory,
): Promise<{ state: VmState; child: ChildProcess }> {
  return startQemu(paths, { argv: saved.argv, bootId: saved.boot_id, accel: saved.accel, vcpus: saved.vcpus, memoryMb: saved.memory_mb, dnsForward }, image);
}

interface Machine {
  argv: string[];
  bootId: string;
  accel: Accel;
  vcpus: number;
  memoryMb: number;
  dnsForward: boolean;
}

async function startQemu(paths: VmPaths, m: Machine, memoryImage?: string): Promise<{ state: VmState; child: ChildProcess }> {
  for (const f of [paths.guestSocket, paths.controlSocket, paths.qmpSocket]) fs.rmSync(f, { force: true });
  appendMarker(paths, `--- ${memoryImage ? 'resume' : 'boot'} ${new Date().toISOString()}`);
  const { passt, pastaPid, qemuEnd } = await startNetwork(paths, m.dnsForward);
  const passtPid = passt.pid!;
  let child: ChildProcess;
  const log = fs.openSync(paths.qemuLog, 'w');
  const image = memoryImage ? fs.openSync(memoryImage, 'r') : null;
  try {
    const argv = image === null ? m.argv : [...m.argv, '-incoming', `fd:${MEMORY_FD}`];
    child = spawn(QEMU_BINARY, argv, { detached: true, stdio: ['ignore', log, log, qemuEnd, image ?? 'ignore'] });
  } finally {
    fs.closeSync(log);
    if (image !== null) fs.closeSync(image);
    qemuEnd.destroy();
  }
  child.unref();
  const kill = () => {
    for (const pid of [child.pid, passtPid, pastaPid]) {
      try {
        if (pid) process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  };
  const pid = child.pid;
  const startTime = pid ? processStartTime(pid) : null;
  if (!pid || !startTime) {
    kill();
    throw new DriverError('FAILED', `QEMU did not start: ${tail(paths.qemuLog)}`);
  }
  const state: VmState = {
    pid, start_time: startTime, passt_pid: passtPid, passt_start_time: processStartTime(passtPid),
    pasta_pid: pastaPid, pasta_start_time: processStartTime(pastaPid), accel: m.accel, vcpus: m.vcpus, memory_mb: m.memoryMb,
    booted_at: new Date().toISOString(), boot_id: m.bootId, argv: m.argv, ...(memoryImage ? { resumed: true } : {}),
  };
  writeState(paths, state);
  try {
    await waitForSockets(paths, state);
  } catch (err) {
    kill();
    throw err;
  }
  return { state, child };
}

function qemuArgs(cfg: LaunchConfig, bootId: string): string[] {
  const { paths } = cfg;
  const append = [
    ...kernelArgs(cfg.accel),
    `hangar.boot_id=${bootId}`,
    `hangar.hostname=${cfg.hostname}`,
    ...(cfg.dns.length ? [`hangar.dns=${cfg.dns.join(',')}`] : []),
    ...(cfg.search.length ? [`hangar.search=${cfg.search.join(',')}`] : []),
    ...guestIpv6Args(),
  ];
  return [
    '-name', `hangar-${cfg.id}`,
    ...machineArgs(cfg.accel, cfg.boot, append, cfg.vcpus, cfg.memoryMb),
    // QEMU confines itself: no new privileges, no spawning, no obsolete syscalls.
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-chardev', `file,id=console,path=${paths.log},append=on`,
    '-serial', 'chardev:console',
    ...disk('base', cfg.baseImage, true),
    ...disk('disk', paths.disk, false),
    ...disk('guest', cfg.guestImage, true),
    '-device', 'virtio-serial-device',
    '-chardev', `socket,id=guest,path=${paths.guestSocket},server=on,wait=off`,
    '-device', 'virtserialport,chardev=guest,name=hangar.guest',
    '-chardev', `socket,id=control,path=${paths.controlSocket},server=on,wait=off`,
    '-device', 'virtserialport,chardev=control,name=hangar.control',
    '-netdev', `stream,id=net,server=off,addr.type=fd,addr.str=${NET_FD}`,
    '-device', 'virtio-net-device,netdev=net',
    '-device', 'virtio-rng-device',
    '-qmp', `unix:${paths.qmpSocket},server=on,wait=off`,
  ];
}

function disk(name: string, file: string, readOnly: boolean): string[] {
  const opts = [`id=${name}`, `file=${file}`, 'format=raw', 'if=none'];
  // The computer's disk gives freed blocks back (its size on the host is its use).
  opts.push(readOnly ? 'readonly=on' : 'discard=unmap,detect-zeroes=unmap');
  return ['-drive', opts.join(','), '-device', `virtio-blk-device,drive=${name},serial=hangar-${name}`];
}

/** QEMU creates its listening sockets while it initializes; once they accept, it runs. */
async function waitForSockets(paths: VmPaths, state: VmState): Promise<void> {
  const deadline = Date.now() + SOCKET_WAIT_MS;
  while (!(await accepts(paths.qmpSocket))) {
    if (!isAlive(state)) throw new DriverError('FAILED', `QEMU exited while starting: ${tail(paths.qemuLog)}`);
    if (Date.now() > deadline) throw new DriverError('FAILED', 'QEMU did not open its control socket');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function accepts(path: string): Promise<boolean> {
  if (!fs.existsSync(path)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const s = net.createConnection({ path });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function readState(paths: VmPaths): VmState | null {
  try {
    return JSON.parse(fs.readFileSync(paths.state, 'utf8')) as VmState;
  } catch {
    return null;
  }
}

export function writeState(paths: VmPaths, state: VmState): void {
  const tmp = `${paths.state}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(state) + '\n');
  fs.renameSync(tmp, paths.state);
}

export function clearState(paths: VmPaths): void {
  fs.rmSync(paths.state, { force: true });
}

/** Ends the VM's passt (it normally quits with QEMU) and its pasta, each if still the process recorded; resolves once they are gone. */
export async function killNetwork(state: VmState | null): Promise<void> {
  if (!state) return;
  await Promise.all([
    killRecorded(state.passt_pid, state.passt_start_time),
    killRecorded(state.pasta_pid ?? null, state.pasta_start_time ?? null),
  ]);
}

async function killRecorded(pid: number | null, startTime: string | null): Promise<void> {
  if (!killIfRecorded(pid, startTime)) return;
  for (let i = 0; i < 200 && processStartTime(pid!) === startTime; i++) await new Promise((r) => setTimeout(r, 10));
}

/** SIGKILLs the QEMU, passt and pasta recorded in `state`, each only if still that process (no waiting). */
export function killRecordedNow(state: VmState): void {
  killIfRecorded(state.pid, state.start_time);
  killIfRecorded(state.passt_pid, state.passt_start_time);
  killIfRecorded(state.pasta_pid ?? null, state.pasta_start_time ?? null);
}

/** SIGKILLs `pid` if it is still the process that started at `startTime` (a pid alone may be reused); whether it was. */
function killIfRecorded(pid: number | null, startTime: string | null): boolean {
  if (!pid || processStartTime(pid) !== startTime) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false; // gone meanwhile
  }
}

/** Whether the QEMU recorded in `state` is still that process. */
export function isAlive(state: VmState | null): boolean {
  return !!state && processStartTime(state.pid) === state.start_time;
}

export function tail(file: string, lines = 4): string {
  try {
    const text = fs.readFileSync(file, 'utf8').trim();
    return text ? text.split('\n').slice(-lines).join(' | ') : 'no output';
  } catch {
    return 'no output';
  }
}
