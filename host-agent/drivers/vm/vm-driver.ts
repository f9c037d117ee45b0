/**
 * The VM driver: each computer is a QEMU microVM with its own kernel
 * (Debian's cloud kernel), booted from a small initramfs that assembles the
 * same root the sandbox driver gives a computer — the template read-only
 * below, the computer's own disk above — and runs the same guest agent,
 * reached over virtio-serial with the same framing. KVM where it really
 * works, software emulation otherwise (accel.ts).
 *
 * VMs are detached: they outlive the host agent, and a new driver on the
 * same data dir finds them by their state files and reconnects.
 */
import fs from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ComputerEvent, FileStream, FsRequest, WatchProducers } from '../../../schema/guest.ts';
import type { ActualState, ComputerSpec, ExecRunParams, ExecRunResult, ProcStartParams, StreamOffsets } from '../../../schema/protocol.ts';
import {
  DriverError,
  type ComputerDriver,
  type ComputerMetrics,
  type DiskExport,
  type DiskImport,
  type DriverDescription,
  type FsAnswer,
  type ProgressFn,
  type StreamProcess,
  type WatchHandle,
} from '../driver.ts';
import { ComputerLocks, GuestOps } from '../guest-ops.ts';
import { installApps } from '../sandbox/apps.ts';
import { appendConsole } from '../sandbox/console-log.ts';
import { copyImage, diskGbOf, growImage } from '../disk-quota.ts';
import { assertSafeId, hostnameFromName } from '../sandbox/paths.ts';
import { listSnapshotFiles, readSnapshotMeta, removeSnapshotFiles, snapshotImagePath, takeSnapshot } from '../snapshot-files.ts';
import { TemplateStore, TEMPLATE_NAME } from '../sandbox/template.ts';
import type { AccelChoice } from './accel.ts';
import { ArchiveWriter, readArchive } from './disk-archive.ts';
import { ensureTemplateImages } from './disk-images.ts';
import { createDisk, destroyDisk, listDisks, readMeta, removeAbandonedDisks, writeMeta, type VmMeta } from './disk.ts';
import { KernelStore } from './kernel.ts';
import { Machines } from './machines.ts';
import { canRebuild, discardMemory, readMemoryRecord, saveMemory } from './memory-image.ts';
import { VmMeter } from './metrics.ts';
import { vmPaths, vmSnapshotsDir, type VmPaths } from './paths.ts';
import type { VmState } from './qemu.ts';
import { bootFiles, bootTimeoutMs, prepareRuntime, vmResolv, type Runtime } from './runtime.ts';
import type { VmSession } from './session.ts';
import { WarmStarts } from './warm-starts.ts';

export interface VmDriverOptions {
  dataDir: string;
}

const MiB = 1024 * 1024;
const POLL_MS = 2000;

export class VmDriver implements ComputerDriver {
  /** What goes through a running computer's guest (exec, streams, files, watches, relayed connections). */
  private readonly guests = new GuestOps({
    requireDisk: (id) => this.requireDisk(id),
    running: (id) => this.sessionFor(id) !== null,
    connect: (id) => this.sessionFor(id)?.connect(),
  });
  readonly name = 'vm';
  private readonly dataDir: string;
  private readonly templates: TemplateStore;
  private readonly kernels: KernelStore;
  private runtime: Promise<Runtime> | null = null;
  private readonly locks = new ComputerLocks();
  private readonly machines: Machines;
  private readonly warm: WarmStarts;
  private readonly meter = new VmMeter();
  private readonly poll: NodeJS.Timeout;

  constructor(opts: VmDriverOptions) {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    this.dataDir = fs.realpathSync(opts.dataDir);
    this.templates = new TemplateStore(this.dataDir);
    this.kernels = new KernelStore(this.dataDir);
    this.machines = new Machines(this.dataDir, this.locks);
    this.warm = new WarmStarts(this.dataDir, this.machines);
    removeAbandonedDisks(this.dataDir);
    this.recover();
    this.poll = setInterval(() => this.machines.checkAll(), POLL_MS);
    this.poll.unref();
  }

  /** The (canonical) data dir this driver works in. */
  get dataDirectory(): string {
    return this.dataDir;
  }

  /** The accelerator in use, once prepare() has probed it. */
  async accel(): Promise<AccelChoice> {
    return (await this.ready(() => undefined)).accel;
  }

  async describe(): Promise<DriverDescription> {
    return { drivers: [this.name], vm_accel: (await this.accel()).accel };
  }

  async prepare(onProgress: ProgressFn): Promise<void> {
    const runtime = await this.ready(onProgress);
    const templateDir = await this.templates.ensure(TEMPLATE_NAME, onProgress);
    await ensureTemplateImages(this.dataDir, templateDir, onProgress);
    onProgress({ phase: 'vm', message: `VMs run on ${runtime.accel.accel === 'kvm' ? 'KVM' : 'software emulation (TCG)'}: ${runtime.accel.reason} (probe boot ${runtime.accel.probe_ms} ms)` });
  }

  async provision(spec: ComputerSpec, cloneFrom: string | undefined, onProgress: ProgressFn, fromSnapshot?: string): Promise<void> {
    if (fromSnapshot) assertSafeId(fromSnapshot);
    return this.locks.run(spec.id, async () => {
      await this.ready(onProgress);
      const paths = vmPaths(this.dataDir, spec.id);
      let meta = readMeta(paths);
      let warmed: VmSession | null = null;
      if (!meta) {
        let templateDir: string;
        let apps: string[] = [];
        // The disk is the quota; a copy has its source's size (at least) and grows to the quota at its first boot.
        let diskMb = diskGbOf(spec) * 1024;
        let source: Parameters<typeof createDisk>[2];
        if (fromSnapshot) {
          const image = snapshotImagePath(this.snapshots, fromSnapshot);
          if (!fs.existsSync(image)) throw new DriverError('NOT_FOUND', `snapshot ${fromSnapshot} is not on this host`);
          // A snapshot without its meta was cut short while it was taken (the image may be incomplete).
          const snap = readSnapshotMeta(this.snapshots, fromSnapshot);
          if (!snap) throw new DriverError('NOT_FOUND', `snapshot ${fromSnapshot} is incomplete on this host`);
          templateDir = fs.existsSync(snap.template_dir) ? snap.template_dir : await this.templates.ensure(spec.template, onProgress);
          apps = snap.apps_installed;
          diskMb = imageMb(image);
          source = { image };
          onProgress({ phase: 'disk', message: `copying snapshot ${fromSnapshot}` });
        } else if (cloneFrom) {
          const from = vmPaths(this.dataDir, cloneFrom);
          const sourceMeta = readMeta(from);
          if (!sourceMeta) throw new DriverError('NOT_FOUND', `computer ${cloneFrom} to clone has no disk on this host`);
          templateDir = sourceMeta.template_dir;
          apps = sourceMeta.apps_installed;
          diskMb = sourceMeta.disk_mb;
          source = { image: from.disk, freeze: () => this.machines.freeze(cloneFrom) };
          onProgress({ phase: 'disk', message: `copying the disk of ${cloneFrom}` });
        } else {
          templateDir = await this.templates.ensure(spec.template, onProgress);
          onProgress({ phase: 'disk', message: 'creating the disk' });
        }
        const images = await ensureTemplateImages(this.dataDir, templateDir, onProgress);
        meta = {
          id: spec.id, name: spec.name, hostname: hostnameFromName(spec.name), template_dir: templateDir,
          vcpus: spec.vcpus, memory_mb: spec.memory_mb, disk_mb: diskMb, apps_installed: apps, created_at: new Date().toISOString(),
        };
        let made = false;
        if (!source) {
          // A new computer of a shape this host has warmed up starts from that machine's memory
          // (and when that fails, boots from the same disk).
          const warm = this.warm.take(await this.ready(() => undefined), images, { vcpus: spec.vcpus, memoryMb: spec.memory_mb, diskMb });
          if (warm) {
            await createDisk(this.dataDir, meta, { image: warm.disk });
            made = true;
            warmed = await this.warm.start(spec, warm, vmResolv().dnsForward);
          }
        }
        if (!made) await createDisk(this.dataDir, meta, source);
      }
      onProgress({ phase: 'boot', message: 'starting' });
      const session = warmed ?? (await this.startLocked(spec));
      if (spec.selected_apps.length > 0) {
        const guest = await session.connect();
        if (!guest) throw new DriverError('FAILED', 'the guest agent stopped answering while installing apps');
        const installed = await installApps(guest, spec.selected_apps, meta.apps_installed, onProgress);
        writeMeta(paths, { ...(readMeta(paths) ?? meta), apps_installed: installed });
      }
      onProgress({ phase: 'boot', message: 'running', fraction: 1 });
    });
  }

  start(spec: ComputerSpec): Promise<void> {
    return this.locks.run(spec.id, async () => {
      await this.startLocked(spec);
    });
  }

  stop(id: string): Promise<void> {
    return this.locks.run(id, async () => {
      const { paths } = this.requireDisk(id);
      await this.machines.powerOff(id);
      // A stop is a power-off: memory kept by an earlier stop goes too.
      discardMemory(paths);
    });
  }

  destroy(id: string): Promise<void> {
    return this.locks.run(id, async () => {
      await this.machines.powerOff(id);
      destroyDisk(vmPaths(this.dataDir, id));
      this.meter.forget(id);
    });
  }

  /**
   * vCPUs and memory are the VM's own hardware: a new size applies at its next boot. So does a
   * larger disk quota (startLocked): a disk grows only while nothing uses it.
   */
  resize(spec: ComputerSpec): Promise<void> {
    return this.locks.run(spec.id, async () => {
      const { paths, meta } = this.requireDisk(spec.id);
      writeMeta(paths, { ...meta, vcpus: spec.vcpus, memory_mb: spec.memory_mb });
      // Memory of other hardware cannot be resumed.
      if (!this.sessionFor(spec.id)) discardMemory(paths);
    });
  }

  setEnv(id: string, env: Record<string, string>): Promise<void> {
    return this.guests.setEnv(id, env);
  }

  exec(id: string, params: ExecRunParams): Promise<ExecRunResult> {
    return this.guests.exec(id, params);
  }

  spawn(id: string, params: ProcStartParams, window: number): Promise<StreamProcess> {
    return this.guests.spawn(id, params, window);
  }

  attach(id: string, procId: string, offsets: StreamOffsets, window: number): Promise<StreamProcess | null> {
    return this.guests.attach(id, procId, offsets, window);
  }

  fs(id: string, request: FsRequest): Promise<FsAnswer> {
    return this.guests.fs(id, request);
  }

  watch(id: string, watchId: string, producers: WatchProducers, onEvents: (events: ComputerEvent[]) => void): Promise<WatchHandle> {
    return this.guests.watch(id, watchId, producers, onEvents);
  }

  connectTcp(id: string, port: number): Promise<Duplex> {
    return this.guests.connectTcp(id, port);
  }

  openFile(id: string, request: FileStream): Promise<Duplex> {
    return this.guests.openFile(id, request);
  }


  /** The VM's serial console (kernel, init, guest agent) is its system log. */
  systemLog(id: string): string | null {
    const paths = vmPaths(this.dataDir, id);
    return fs.existsSync(paths.dir) ? paths.log : null;
  }

  logLine(id: string, line: string): void {
    appendConsole(vmPaths(this.dataDir, id), line);
  }

  /** The address the VM got from passt's DHCP (its init records it). */
  async address(id: string): Promise<string | null> {
    const session = this.sessionFor(id);
    if (!session) return null;
    const words = await session.control.request('addr', 5000).catch(() => []);
    return words[0] && net.isIP(words[0]) ? words[0] : null;
  }

  async metrics(id: string): Promise<ComputerMetrics | null> {
    const session = this.sessionFor(id);
    return session ? this.meter.measure(session) : null;
  }

  async state(id: string): Promise<ActualState> {
    if (!readMeta(vmPaths(this.dataDir, id))) return 'absent';
    const guest = await this.sessionFor(id)?.connect();
    if (!guest) return 'stopped';
    try {
      await guest.ping();
      return 'running';
    } catch {
      return 'stopped';
    }
  }

  async list(): Promise<string[]> {
    return listDisks(this.dataDir);
  }

  exportDisk(id: string): Promise<DiskExport> {
    // The lock is held until the archive is read: nothing starts the computer meanwhile.
    return this.locks.hold(id, () => {
      const { paths } = this.requireDisk(id);
      if (this.sessionFor(id)) throw new DriverError('BAD_REQUEST', `computer ${id} is running; only a stopped computer's disk can be moved`);
      return readArchive(paths);
    });
  }


  importDisk(spec: ComputerSpec, onProgress: ProgressFn): Promise<DiskImport> {
    return this.locks.run(spec.id, async () => {
      await this.ready(onProgress);
      // The disk needs the root it was made on; on a host that never built it, this builds the current recipe.
      await this.templates.ensure(spec.template, onProgress);
      const paths = vmPaths(this.dataDir, spec.id);
      if (readMeta(paths)) {
        if (this.sessionFor(spec.id)) throw new DriverError('FAILED', `computer ${spec.id} is running on this host`);
        // A copy left by a move that failed while this agent was away: the server says the computer lives elsewhere.
        destroyDisk(paths);
      }
      const writer = new ArchiveWriter(this.dataDir, spec.id);
      return {
        write: (chunk) => writer.write(chunk),
        commit: () => this.locks.run(spec.id, () => writer.commit()),
        abort: () => writer.abort(),
      };
    });
  }

  /**
   * A point-in-time copy of computer `id`'s disk under `name`, running or not (a running VM's
   * file system is frozen for the copy, as for a clone). The disk only: never the VM's memory.
   */
  async snapshotDisk(id: string, name: string): Promise<{ bytes: number }> {
    assertSafeId(name);
    return this.locks.run(id, async () => {
      const { paths, meta } = this.requireDisk(id);
      const freeze = () => this.machines.freeze(id);
      return takeSnapshot(this.snapshots, name, (image) => copyImage(paths.disk, image, { freeze }), {
        computer_id: id, template_dir: meta.template_dir, apps_installed: meta.apps_installed, disk_mb: meta.disk_mb,
      });
    });
  }

  /** Replaces stopped computer `id`'s disk with snapshot `name` (which stays). */
  async restoreDisk(id: string, name: string): Promise<void> {
    assertSafeId(name);
    return this.locks.run(id, async () => {
      const { paths, meta } = this.requireDisk(id);
      if (this.sessionFor(id)) throw new DriverError('BAD_REQUEST', `computer ${id} is running; stop it to restore a snapshot`);
      const source = snapshotImagePath(this.snapshots, name);
      const snap = readSnapshotMeta(this.snapshots, name);
      if (!fs.existsSync(source) || !snap) throw new DriverError('NOT_FOUND', `no snapshot ${name}`);
      // Memory kept by a suspend belongs to the disk being replaced.
      discardMemory(paths);
      await copyImage(source, paths.disk);
      // The disk never shrinks: one smaller than the computer's grows back to its size now (so that
      // disk_mb always says the image's size, which a move checks).
      await growImage(paths.disk, meta.disk_mb * MiB);
      writeMeta(paths, {
        ...meta,
        template_dir: fs.existsSync(snap.template_dir) ? snap.template_dir : meta.template_dir,
        apps_installed: snap.apps_installed,
        disk_mb: imageMb(paths.disk),
      });
    });
  }

  async listSnapshots(): Promise<{ name: string; created_ms: number }[]> {
    return listSnapshotFiles(this.snapshots);
  }

  /** Removes snapshot `name`; gone already is fine. */
  async deleteSnapshot(name: string): Promise<void> {
    assertSafeId(name);
    removeSnapshotFiles(this.snapshots, name);
  }

  onExit(listener: (id: string, reason: string) => void): void {
    this.machines.onExit(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.poll);
    this.warm.close();
    this.machines.close();
  }

  /** The VM's QEMU process and what it booted with (for operators, tests and benchmarks). */
  vmInfo(id: string): (VmState & { qemu_rss_bytes: number }) | null {
    const session = this.sessionFor(id);
    if (!session) return null;
    const status = fs.readFileSync(`/proc/${session.state.pid}/status`, 'utf8');
    return { ...session.state, qemu_rss_bytes: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0) * 1024 };
  }

  /** Where the warm image of a computer's shape is (made or not), for operators and tests. */
  async warmImageDir(id: string): Promise<string> {
    const { meta } = this.requireDisk(id);
    const images = await ensureTemplateImages(this.dataDir, meta.template_dir, () => undefined);
    return this.warm.dir(await this.ready(() => undefined), images, { vcpus: meta.vcpus, memoryMb: meta.memory_mb, diskMb: meta.disk_mb });
  }

  // ------------------------------------------------------------------ internals

  private get snapshots(): string {
    return vmSnapshotsDir(this.dataDir);
  }

  /** Kernel, boot image, guest image and accelerator: made once per driver, shared by every VM. */
  private ready(onProgress: ProgressFn): Promise<Runtime> {
    this.runtime ??= prepareRuntime(this.dataDir, this.kernels, onProgress);
    // A failed preparation (say, apt was unreachable) is tried again by the next caller.
    this.runtime.catch(() => (this.runtime = null));
    return this.runtime;
  }

  private async startLocked(spec: ComputerSpec): Promise<VmSession> {
    const { paths, meta } = this.requireDisk(spec.id);
    const existing = this.sessionFor(spec.id);
    if (existing) {
      if (await existing.connect()) return existing; // running: start is a no-op
      await this.machines.powerOff(spec.id); // alive but its guest is gone: reboot it
    }
    const runtime = await this.ready(() => undefined);
    // The disk grows to the quota (it never shrinks). Memory kept by a suspend knew the disk at
    // its old size: it cannot be resumed on a grown one.
    const diskMb = Math.max(diskGbOf(spec) * 1024, meta.disk_mb);
    if (imageMb(paths.disk) < diskMb) {
      discardMemory(paths);
      await growImage(paths.disk, diskMb * MiB);
    }
    const updated: VmMeta = { ...meta, name: spec.name, hostname: hostnameFromName(spec.name), vcpus: spec.vcpus, memory_mb: spec.memory_mb, disk_mb: imageMb(paths.disk) };
    writeMeta(paths, updated);
    const resolv = vmResolv();
    const resumed = await this.resumeLocked(spec, paths, resolv.dnsForward);
    if (resumed) return resumed;
    const images = await ensureTemplateImages(this.dataDir, updated.template_dir, () => undefined);
    const { session, guest } = await this.machines.boot(
      {
        id: spec.id, paths, accel: runtime.accel.accel, boot: bootFiles(runtime), baseImage: images.base, guestImage: images.guest,
        vcpus: spec.vcpus, memoryMb: spec.memory_mb, hostname: updated.hostname, ...resolv,
      },
      bootTimeoutMs(runtime),
    );
    await guest.setEnv(spec.env);
    return session;
  }

  /**
   * Starts the computer from the memory it kept, if that fits (the same hardware, every file of
   * the machine still there); null when it must boot. An image that fails to load is dropped:
   * the disk was synced when it was saved, so the boot that follows finds it consistent.
   */
  private async resumeLocked(spec: ComputerSpec, paths: VmPaths, dnsForward: boolean): Promise<VmSession | null> {
    const saved = readMemoryRecord(paths);
    if (!saved) return null;
    if (!canRebuild(saved, spec.vcpus, spec.memory_mb)) {
      discardMemory(paths);
      return null;
    }
    try {
      // Used once: from the moment it is loaded the disk moves away from what the image holds.
      const { session, guest } = await this.machines.resume(spec.id, paths, saved, paths.memory, dnsForward, () => discardMemory(paths));
      await session.control.request(`clock ${Math.floor(Date.now() / 1000)}`, 10_000);
      await guest.setEnv(spec.env);
      return session;
    } catch (err) {
      await this.machines.abandon(spec.id, paths);
      discardMemory(paths);
      fs.appendFileSync(paths.log, `--- the memory image could not be resumed (${(err as Error).message}); booting\n`);
      return null;
    }
  }

  /**
   * Stops the computer keeping its memory (memory.state): the next start resumes it where it was.
   * The disk is synced first, so it is consistent even if the image can never be resumed.
   */
  suspend(id: string): Promise<void> {
    return this.locks.run(id, async () => {
      const { paths } = this.requireDisk(id);
      const session = this.sessionFor(id);
      if (!session) return; // stopped already (with or without an image): nothing to keep
      await session.control.request('sync', 60_000);
      const state = session.state;
      session.stopping = true;
      try {
        await saveMemory(paths, { argv: state.argv, boot_id: state.boot_id, accel: state.accel, vcpus: state.vcpus, memory_mb: state.memory_mb });
      } catch (err) {
        session.stopping = false;
        throw err;
      }
      await this.machines.quitSaved(id, session);
    });
  }

  private sessionFor(id: string): VmSession | null {
    return this.machines.session(id);
  }


  /** Finds VMs left running by an earlier agent and reconnects to them. */
  private recover(): void {
    for (const id of listDisks(this.dataDir)) void this.sessionFor(id)?.connect();
  }

  private requireDisk(id: string): { paths: VmPaths; meta: VmMeta } {
    const paths = vmPaths(this.dataDir, id);
    const meta = readMeta(paths);
    if (!meta) throw new DriverError('NOT_FOUND', `computer ${id} has no disk on this host`);
    return { paths, meta };
  }
}

/** The size of a disk image, MiB. */
function imageMb(image: string): number {
  return Math.ceil(fs.statSync(image).size / MiB);
}
