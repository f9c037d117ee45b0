/**
 * A VM's memory on disk: stopping with `keep_memory` saves the paused VM's
 * whole state (RAM, CPUs, devices) with QEMU's migration stream into
 * memory.state, and the next start loads it into a new QEMU of the very same
 * machine, which carries on where the computer was — processes, their
 * memory, open files, shells. The image is used once: a computer that ran
 * again has a disk the image no longer matches.
 *
 * QEMU writes the stream to a unix socket this agent listens on (QEMU's own
 * seccomp filter forbids it to spawn a writer), and reads it back from a
 * descriptor it is started with.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { DriverError } from '../driver.ts';
import type { VmPaths } from './paths.ts';
import type { VmState } from './qemu.ts';
import { Qmp } from './qmp.ts';

/** What the saved VM was: a resume must rebuild exactly this machine (the same argv: files, sizes, kernel line). */
export interface MemoryRecord extends Pick<VmState, 'argv' | 'boot_id' | 'accel' | 'vcpus' | 'memory_mb'> {
  saved_at: string;
  bytes: number;
}

const recordPath = (paths: VmPaths) => `${paths.memory}.json`;

export function readMemoryRecord(paths: VmPaths): MemoryRecord | null {
  try {
    const r = JSON.parse(fs.readFileSync(recordPath(paths), 'utf8')) as MemoryRecord;
    return fs.existsSync(paths.memory) ? r : null;
  } catch {
    return null;
  }
}

/** Whether the machine a record describes can be built again: the same hardware, and every file it names still there. */
export function canRebuild(record: MemoryRecord, vcpus: number, memoryMb: number): boolean {
  const files = record.argv
    .flatMap((a) => [...a.matchAll(/(?:^|,)file=([^,]+)/g)].map((m) => m[1]))
    .concat(argAfter(record.argv, '-kernel'), argAfter(record.argv, '-initrd'));
  return record.vcpus === vcpus && record.memory_mb === memoryMb && files.every((f) => f && fs.existsSync(f));
}

function argAfter(argv: string[], flag: string): string {
  const i = argv.indexOf(flag);
  return i >= 0 ? (argv[i + 1] ?? '') : '';
}

export function discardMemory(paths: VmPaths): void {
  fs.rmSync(recordPath(paths), { force: true });
  fs.rmSync(paths.memory, { force: true });
  fs.rmSync(`${paths.memory}.tmp`, { force: true });
}

/** Pauses the running VM and writes its state to memory.state; the VM stays paused (quit it after). */
export async function saveMemory(paths: VmPaths, record: Omit<MemoryRecord, 'saved_at' | 'bytes'>): Promise<MemoryRecord> {
  discardMemory(paths);
  const tmp = `${paths.memory}.tmp`;
  const socketPath = path.join(paths.dir, 'm.sock');
  fs.rmSync(socketPath, { force: true });
  let written: Promise<number> | null = null;
  const server = net.createServer((conn) => {
    server.close(); // one stream
    const out = fs.createWriteStream(tmp, { mode: 0o600 });
    conn.pipe(out);
    written = new Promise((resolve, reject) => {
      out.once('finish', () => resolve(out.bytesWritten));
      out.once('error', reject);
      conn.once('error', reject);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  const qmp = await Qmp.connect(paths.qmpSocket);
  try {
    // Nothing to throttle for: the stream goes to a local file.
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 16 * 1024 ** 3 });
    await qmp.execute('stop');
    await qmp.execute('migrate', { uri: `unix:${socketPath}` });
    for (;;) {
      const m = (await qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (m.status === 'completed') break;
      if (m.status === 'failed' || m.status === 'cancelled') throw new DriverError('FAILED', `saving the VM's memory failed: ${m['error-desc'] ?? m.status}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const bytes = await (written ?? Promise.reject(new DriverError('FAILED', 'QEMU did not connect to write its memory')));
    fs.renameSync(tmp, paths.memory);
    const full: MemoryRecord = { ...record, saved_at: new Date().toISOString(), bytes };
    fs.writeFileSync(recordPath(paths), JSON.stringify(full) + '\n');
    return full;
  } catch (err) {
    // The computer goes on as it was.
    await qmp.execute('cont').catch(() => undefined);
    discardMemory(paths);
    throw err instanceof DriverError ? err : new DriverError('FAILED', `saving the VM's memory failed: ${(err as Error).message}`);
  } finally {
    qmp.close();
    server.close();
    fs.rmSync(socketPath, { force: true });
  }
}

/** Waits until a QEMU started with `-incoming` has loaded the state, then lets the VM run. */
export async function finishResume(paths: VmPaths, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const qmp = await Qmp.connect(paths.qmpSocket);
  try {
    for (;;) {
      const m = (await qmp.execute('query-migrate')) as { status?: string; 'error-desc'?: string };
      if (m.status === 'completed') break;
      if (m.status === 'failed') throw new DriverError('FAILED', `loading the VM's memory failed: ${m['error-desc'] ?? 'failed'}`);
      if (Date.now() > deadline) throw new DriverError('FAILED', "loading the VM's memory took too long");
      await new Promise((r) => setTimeout(r, 10));
    }
    // A VM saved paused comes back paused.
    await qmp.execute('cont');
  } finally {
    qmp.close();
  }
}
