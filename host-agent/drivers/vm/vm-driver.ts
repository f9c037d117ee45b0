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
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { ActualState, ComputerSpec, ExecRunParams, ExecRunResult, ProcStartParams, StreamOffsets } from '../../../schema/protocol.ts';
import type { GuestClient } from '../../guest-client.ts';
import { openGuestTcp } from '../../relay/guest-tcp.ts';
import { RelayTargetError } from '../../relay/target-error.ts';
import { DriverError, type ComputerDriver, type ComputerMetrics, type DiskExport, type DiskImport, type DriverDescription, type ProgressFn, type StreamProcess } from '../driver.ts';
import { ComputerLocks, guestAttach, guestExec, guestFailure, guestSpawn } from '../guest-ops.ts';
import { installApps } from '../sandbox/apps.ts';
import { computerResolvConf } from '../sandbox/host-config.ts';
import { hostnameFromName } from '../sandbox/paths.ts';
import { TemplateStore, TEMPLATE_NAME } from '../sandbox/template.ts';
import { chooseAccel, type AccelChoice } from './accel.ts';
import { ensureBootImage, staticBusybox } from './boot-image.ts';
import { ArchiveWriter, readArchive } from './disk-archive.ts';
import { ensureBaseImage, ensureGuestImage } from './disk-images.ts';
import { createDisk, destroyDisk, listDisks, makeEmptyDisk, readMeta, removeAbandonedDisks, writeMeta, type VmMeta } from './disk.ts';
import { KernelStore, type GuestKernel } from './kernel.ts';
import { VmMeter } from './metrics.ts';
import { vmPaths, vmPathsIn, type VmPaths } from './paths.ts';
import { checkVmHost } from './preflight.ts';
import { kernelArgs, kernelImage } from './qemu-args.ts';
import { clearState, isAlive, killPasst, launchVm, readState, resumeVm, tail, type VmState } from './qemu.ts';
import { discardMemory, finishResume, readMemoryRecord, saveMemory, type MemoryRecord } from './memory-image.ts';
import { findWarm, machineFor, noteRanIn, pruneWarm, touchWarm, warmDir, warmKey, type WarmImage, type WarmShape } from './warm-image.ts';
import { BuildOnce, buildPath, publish } from './build-dir.ts';
import { Qmp } from './qmp.ts';
import { VmSession } from './session.ts';

export interface VmDriverOptions {
  dataDir: string;
  /** The disk quota of a computer, MiB (sparse: only what is written takes space). */
  diskMb?: number;
}

/** What every VM of this agent boots with, settled by prepare(). */
interface Runtime {
  kernel: GuestKernel;
  initrd: string;
  guestImage: string;
  accel: AccelChoice;
}

const DEFAULT_DISK_MB = 10 * 1024;
const POLL_MS = 2000;

export class VmDriver implements ComputerDriver {
  readonly name = 'vm';
  private readonly dataDir: string;
  private readonly diskMb: number;
  private readonly templates: TemplateStore;
  private readonly kernels: KernelStore;
  private runtime: Promise<Runtime> | null = null;
  private readonly sessions = new Map<string, VmSession>();
  private readonly locks = new ComputerLocks();
  private readonly exitListeners: Array<(id: string, reason: string) => void> = [];
  private readonly meter = new VmMeter();
  private readonly warmBuilds = new BuildOnce<void>();
  private readonly poll: NodeJS.Timeout;

  constructor(opts: VmDriverOptions) {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    this.dataDir = fs.realpathSync(opts.dataDir);
    this.diskMb = opts.diskMb ?? DEFAULT_DISK_MB;
    this.templates = new TemplateStore(this.dataDir);
    this.kernels = new KernelStore(this.dataDir);
    removeAbandonedDisks(this.dataDir);
    this.recover();
    this.poll = setInterval(() => this.checkAll(), POLL_MS);
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
    await ensureBaseImage(this.dataDir, templateDir, onProgress);
    onProgress({ phase: 'vm', message: `VMs run on ${runtime.accel.accel === 'kvm' ? 'KVM' : 'software emulation (TCG)'}: ${runtime.accel.reason} (probe boot ${runtime.accel.probe_ms} ms)` });
  }

  provision(spec: ComputerSpec, cloneFrom: string | undefined, onProgress: ProgressFn): Promise<void> {
    return this.locks.run(spec.id, async () => {
      await this.ready(onProgress);
      const paths = vmPaths(this.dataDir, spec.id);
      let meta = readMeta(paths);
      let warmed: VmSession | null = null;
      if (!meta) {
        let templateDir: string;
        let apps: string[] = [];
        let diskMb = this.diskMb;
        let source: Parameters<typeof createDisk>[2];
        if (cloneFrom) {
          const from = vmPaths(this.dataDir, cloneFrom);
          const sourceMeta = readMeta(from);
          if (!sourceMeta) throw new DriverError('NOT_FOUND', `computer ${cloneFrom} to clone has no disk on this host`);
          templateDir = sourceMeta.template_dir;
          apps = sourceMeta.apps_installed;
          diskMb = sourceMeta.disk_mb;
          source = { image: from.disk, freeze: () => this.freeze(cloneFrom) };
          onProgress({ phase: 'disk', message: `copying the disk of ${cloneFrom}` });
        } else {
          templateDir = await this.templates.ensure(spec.template, onProgress);
          onProgress({ phase: 'disk', message: 'creating the disk' });
        }
        const baseImage = await ensureBaseImage(this.dataDir, templateDir, onProgress);
        meta = {
          id: spec.id, name: spec.name, hostname: hostnameFromName(spec.name), template_dir: templateDir,
          vcpus: spec.vcpus, memory_mb: spec.memory_mb, disk_mb: diskMb, apps_installed: apps, created_at: new Date().toISOString(),
        };
        let made = false;
        if (!source) {
          // A new computer of a shape this host has warmed up starts from that machine's memory
          // (and when that fails, boots from the same disk).
          const shape = { vcpus: spec.vcpus, memoryMb: spec.memory_mb, diskMb };
          const warm = findWarm(this.dataDir, this.warmKeyOf(await this.ready(() => undefined), baseImage, shape));
          if (warm) {
            touchWarm(warm);
            await createDisk(this.dataDir, meta, { image: warm.disk });
            made = true;
            warmed = await this.startWarm(spec, warm);
          } else {
            this.warmUpLater(baseImage, shape);
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
      await this.stopLocked(id);
      // A stop is a power-off: memory kept by an earlier stop goes too.
      discardMemory(paths);
    });
  }

  destroy(id: string): Promise<void> {
    return this.locks.run(id, async () => {
      await this.stopLocked(id);
      destroyDisk(vmPaths(this.dataDir, id));
      this.meter.forget(id);
    });
  }

  /** vCPUs and memory are the VM's own hardware: a new size applies at its next boot. */
  resize(spec: ComputerSpec): Promise<void> {
    return this.locks.run(spec.id, async () => {
      const { paths, meta } = this.requireDisk(spec.id);
      writeMeta(paths, { ...meta, vcpus: spec.vcpus, memory_mb: spec.memory_mb });
      // Memory of other hardware cannot be resumed.
      if (!this.sessionFor(spec.id)) discardMemory(paths);
    });
  }

  async setEnv(id: string, env: Record<string, string>): Promise<void> {
    this.requireDisk(id);
    const guest = await this.sessionFor(id)?.connect();
    // A stopped computer gets its environment from the spec when it starts.
    if (guest) await guest.setEnv(env);
  }

  async exec(id: string, params: ExecRunParams): Promise<ExecRunResult> {
    const guest = await this.guestOf(id);
    try {
      return await guestExec(guest, params);
    } catch (err) {
      throw guestFailure(id, err, () => !this.sessionFor(id));
    }
  }

  async spawn(id: string, params: ProcStartParams, window: number): Promise<StreamProcess> {
    const guest = await this.guestOf(id);
    try {
      return await guestSpawn(guest, params, window);
    } catch (err) {
      throw guestFailure(id, err, () => !this.sessionFor(id));
    }
  }

  async attach(id: string, procId: string, offsets: StreamOffsets, window: number): Promise<StreamProcess | null> {
    const guest = await this.guestOf(id);
    try {
      return await guestAttach(guest, procId, offsets, window);
    } catch (err) {
      throw guestFailure(id, err, () => !this.sessionFor(id));
    }
  }

  async connectTcp(id: string, port: number): Promise<Duplex> {
    let guest: GuestClient;
    try {
      guest = await this.guestOf(id);
    } catch (err) {
      throw new RelayTargetError('unreachable', err instanceof Error ? err.message : String(err));
    }
    return openGuestTcp(guest, port);
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
    return new Promise((resolve, reject) => {
      // The lock is held until the archive is read: nothing starts the computer meanwhile.
      void this.locks.run(id, async () => {
        let archive: DiskExport;
        try {
          const { paths } = this.requireDisk(id);
          if (this.sessionFor(id)) throw new DriverError('BAD_REQUEST', `computer ${id} is running; only a stopped computer's disk can be moved`);
          archive = readArchive(paths);
        } catch (err) {
          reject(err);
          return;
        }
        resolve(archive);
        await archive.done.catch(() => undefined);
      });
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

  onExit(listener: (id: string, reason: string) => void): void {
    this.exitListeners.push(listener);
  }

  async close(): Promise<void> {
    clearInterval(this.poll);
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
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
    const baseImage = await ensureBaseImage(this.dataDir, meta.template_dir, () => undefined);
    const shape = { vcpus: meta.vcpus, memoryMb: meta.memory_mb, diskMb: meta.disk_mb };
    return warmDir(this.dataDir, this.warmKeyOf(await this.ready(() => undefined), baseImage, shape));
  }

  // ------------------------------------------------------------------ internals

  /** Kernel, boot image, guest image and accelerator: made once per driver, shared by every VM. */
  private ready(onProgress: ProgressFn): Promise<Runtime> {
    this.runtime ??= (async () => {
      checkVmHost(this.dataDir);
      const kernel = await this.kernels.ensure(onProgress);
      const initrd = await ensureBootImage(this.dataDir, kernel);
      const guestImage = await ensureGuestImage(this.dataDir);
      onProgress({ phase: 'vm', message: 'probing for hardware virtualization (booting a test VM)' });
      const accel = await chooseAccel(kernel, this.dataDir, staticBusybox().data);
      pruneWarm(this.dataDir);
      return { kernel, initrd, guestImage, accel };
    })();
    // A failed preparation (say, apt was unreachable) is tried again by the next caller.
    this.runtime.catch(() => (this.runtime = null));
    return this.runtime;
  }

  private async startLocked(spec: ComputerSpec): Promise<VmSession> {
    const { paths, meta } = this.requireDisk(spec.id);
    const existing = this.sessionFor(spec.id);
    if (existing) {
      if (await existing.connect()) return existing; // running: start is a no-op
      await this.stopLocked(spec.id); // alive but its guest is gone: reboot it
    }
    const runtime = await this.ready(() => undefined);
    const updated: VmMeta = { ...meta, name: spec.name, hostname: hostnameFromName(spec.name), vcpus: spec.vcpus, memory_mb: spec.memory_mb };
    writeMeta(paths, updated);
    const resolv = parseResolvConf(computerResolvConf());
    const resumed = await this.resumeLocked(spec, paths, resolv.dnsForward);
    if (resumed) return resumed;
    const baseImage = await ensureBaseImage(this.dataDir, updated.template_dir, () => undefined);
    const { state, child } = await launchVm({
      id: spec.id, paths, accel: runtime.accel.accel, boot: { kernel: kernelImage(runtime.kernel, runtime.accel.accel), initrd: runtime.initrd },
      baseImage, guestImage: runtime.guestImage, vcpus: spec.vcpus, memoryMb: spec.memory_mb, hostname: updated.hostname, ...resolv,
    }).catch((err: unknown) => {
      this.cleanupDead(spec.id, paths);
      throw err;
    });
    const session = this.track(spec.id, paths, state);
    session.child = child;
    child.once('exit', () => this.checkExit(spec.id));
    const guest = await session.waitForGuest(bootTimeoutMs(runtime));
    if (!guest) {
      const why = session.alive() ? 'the guest agent did not answer' : `the VM stopped while booting: ${tail(paths.qemuLog, 2)}`;
      await this.stopLocked(spec.id);
      throw new DriverError('FAILED', `the computer did not come up (${why}); console: ${tail(paths.log, 6)}`);
    }
    // Running means reachable and online: the network comes up while the guest agent starts.
    await session.control.request('ready', 35_000).catch(() => undefined);
    await guest.setEnv(spec.env);
    return session;
  }

  /**
   * Starts the computer from its memory image, if it has one that fits (the same hardware, every
   * file of the machine still there); null when it must boot. An image that fails to load is
   * dropped: the disk was synced when it was saved, so the boot that follows finds it consistent.
   */
  private async resumeLocked(spec: ComputerSpec, paths: VmPaths, dnsForward: boolean): Promise<VmSession | null> {
    const saved = readMemoryRecord(paths);
    if (!saved) return null;
    const files = saved.argv.flatMap((a) => [...a.matchAll(/(?:^|,)file=([^,]+)/g)].map((m) => m[1])).concat(argAfter(saved.argv, '-kernel'), argAfter(saved.argv, '-initrd'));
    if (saved.vcpus !== spec.vcpus || saved.memory_mb !== spec.memory_mb || !files.every((f) => f && fs.existsSync(f))) {
      discardMemory(paths);
      return null;
    }
    try {
      const { session, guest } = await this.resumeMachine(spec.id, paths, saved, paths.memory, dnsForward, () => discardMemory(paths));
      await session.control.request(`clock ${Math.floor(Date.now() / 1000)}`, 10_000);
      await guest.setEnv(spec.env);
      return session;
    } catch (err) {
      await this.abandon(spec.id, paths);
      discardMemory(paths);
      fs.appendFileSync(paths.log, `--- the memory image could not be resumed (${(err as Error).message}); booting\n`);
      return null;
    }
  }

  /**
   * A new computer from a warm image: its disk is already a copy of the warm disk; the warm
   * machine's memory is loaded around it and the guest takes its own identity. Null when that
   * fails: the computer then boots from the same disk.
   */
  private async startWarm(spec: ComputerSpec, warm: WarmImage): Promise<VmSession | null> {
    const paths = vmPaths(this.dataDir, spec.id);
    const hostname = hostnameFromName(spec.name);
    try {
      const machine = machineFor(warm, paths);
      const { session, guest } = await this.resumeMachine(spec.id, paths, machine, warm.memory, parseResolvConf(computerResolvConf()).dnsForward, () => undefined);
      await guest.request({ op: 'machine', hostname, entropy: randomBytes(64).toString('base64'), time_ms: Date.now() }, { timeoutMs: 30_000 });
      await guest.setEnv(spec.env);
      return session;
    } catch (err) {
      await this.abandon(spec.id, paths);
      fs.appendFileSync(paths.log, `--- the warm image could not be used (${(err as Error).message}); booting\n`);
      return null;
    }
  }

  /** Loads a memory image into the machine `saved` describes, lets it run and reconnects to its guest. */
  private async resumeMachine(
    id: string,
    paths: VmPaths,
    saved: MemoryRecord,
    image: string,
    dnsForward: boolean,
    loaded: () => void,
  ): Promise<{ session: VmSession; guest: GuestClient }> {
    const { state, child } = await resumeVm(paths, saved, dnsForward, image);
    const session = this.track(id, paths, state);
    session.child = child;
    child.once('exit', () => this.checkExit(id));
    await finishResume(paths, 120_000);
    loaded();
    // The guest may still hold the connection of before the save; it greets a new one once it
    // has read that one's end: give it a moment to, and connect() retries if it was not enough.
    await new Promise((r) => setTimeout(r, 250));
    const guest = await session.reconnect(60_000);
    if (!guest) throw new DriverError('FAILED', 'the guest agent did not answer after the memory was loaded');
    return { session, guest };
  }

  /** Ends a VM that did not come up as it should (no clean power-off: it is not running anything of the tenant's). */
  private async abandon(id: string, paths: VmPaths): Promise<void> {
    const session = this.sessions.get(id);
    if (session) session.stopping = true;
    const state = readState(paths);
    if (state && isAlive(state)) kill(state.pid);
    if (state) await exits(state, 10_000);
    killPasst(state);
    this.cleanupDead(id, paths);
  }

  /** The warm image key of a machine of this runtime, base image and shape. */
  private warmKeyOf(runtime: Runtime, baseImage: string, shape: WarmShape): string {
    const accel = runtime.accel.accel;
    return warmKey([kernelImage(runtime.kernel, accel), runtime.initrd, runtime.guestImage, baseImage, accel], shape, kernelArgs(accel));
  }

  /** Makes the warm image of a shape in the background (once); creates use it as soon as it is there. */
  private warmUpLater(baseImage: string, shape: WarmShape): void {
    void this.ready(() => undefined)
      .then((runtime) => {
        const final = warmDir(this.dataDir, this.warmKeyOf(runtime, baseImage, shape));
        if (fs.existsSync(final)) return undefined;
        return this.warmBuilds.run(final, () => this.buildWarm(runtime, baseImage, shape, final));
      })
      .catch((err: Error) => console.error(`vm driver: warming up a ${shape.vcpus} vCPU / ${shape.memoryMb} MiB machine failed: ${err.message}`));
  }

  /** Boots a machine of the shape on an empty disk, waits until it is ready, saves it, and puts it away. */
  private async buildWarm(runtime: Runtime, baseImage: string, shape: WarmShape, final: string): Promise<void> {
    const tmp = buildPath(final);
    fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
    const paths = vmPathsIn(tmp);
    let state: VmState | null = null;
    try {
      await makeEmptyDisk(paths.disk, shape.diskMb, tmp);
      const accel = runtime.accel.accel;
      ({ state } = await launchVm({
        id: 'warm', paths, accel, boot: { kernel: kernelImage(runtime.kernel, accel), initrd: runtime.initrd }, baseImage,
        guestImage: runtime.guestImage, vcpus: shape.vcpus, memoryMb: shape.memoryMb, hostname: 'computer', ...parseResolvConf(computerResolvConf()),
      }));
      const session = new VmSession('warm', paths, state, () => undefined);
      const guest = await session.waitForGuest(bootTimeoutMs(runtime));
      if (!guest) throw new DriverError('FAILED', `the warm machine did not come up: ${tail(paths.log, 4)}`);
      await session.control.request('ready', 35_000);
      await session.control.request('sync', 60_000);
      // Saved without a host connection: a new computer's first connection is the guest's first.
      session.close();
      await new Promise((r) => setTimeout(r, 500));
      await saveMemory(paths, { argv: state.argv, boot_id: state.boot_id, accel, vcpus: shape.vcpus, memory_mb: shape.memoryMb });
      await quitQemu(paths);
      if (!(await exits(state, 10_000))) kill(state.pid);
      await exits(state, 10_000);
      killPasst(state);
      for (const f of [paths.guestSocket, paths.controlSocket, paths.qmpSocket, paths.state, paths.qemuLog, paths.passtLog]) fs.rmSync(f, { force: true });
      noteRanIn(tmp);
      publish(tmp, final);
    } catch (err) {
      if (state && isAlive(state)) kill(state.pid);
      killPasst(state);
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
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
      await quitQemu(paths);
      if (!(await exits(state, 10_000))) kill(state.pid);
      await exits(state, 10_000);
      killPasst(state);
      this.cleanupDead(id, paths);
    });
  }

  /** Clean power-off through the control loop, within a deadline; then QEMU is told to quit, then killed. */
  private async stopLocked(id: string): Promise<void> {
    const paths = vmPaths(this.dataDir, id);
    const session = this.sessions.get(id) ?? this.sessionFor(id);
    if (session) session.stopping = true;
    const state = readState(paths);
    if (state && isAlive(state)) {
      const graceMs = state.accel === 'kvm' ? 10_000 : 30_000;
      const asked = await (session?.control.request('poweroff', 5000).then(() => true, () => false) ?? Promise.resolve(false));
      if (!asked || !(await exits(state, graceMs))) {
        await quitQemu(paths);
        if (!(await exits(state, 5000))) kill(state.pid);
      }
      if (!(await exits(state, 10_000))) throw new DriverError('FAILED', `computer ${id} did not stop`);
    }
    killPasst(state);
    this.cleanupDead(id, paths);
  }

  private cleanupDead(id: string, paths: VmPaths): void {
    this.sessions.get(id)?.close();
    this.sessions.delete(id);
    clearState(paths);
    for (const f of [paths.guestSocket, paths.controlSocket, paths.qmpSocket]) fs.rmSync(f, { force: true });
  }

  /** Freezes a running computer's disk for a consistent copy; the returned function thaws it. */
  private async freeze(id: string): Promise<() => Promise<void>> {
    const session = this.sessionFor(id);
    if (!session) return async () => undefined; // stopped: the image is at rest
    await session.control.request('freeze', 30_000).catch((err: Error) => {
      throw new DriverError('FAILED', `cannot freeze the disk of ${id} for a copy: ${err.message}`);
    });
    return async () => {
      await session.control.request('thaw', 30_000).catch(() => undefined);
    };
  }

  private track(id: string, paths: VmPaths, state: VmState): VmSession {
    this.sessions.get(id)?.close();
    const session = new VmSession(id, paths, state, () => this.checkExit(id));
    this.sessions.set(id, session);
    return session;
  }

  /** The session of a computer whose VM is alive, picking up ones an earlier agent started. */
  private sessionFor(id: string): VmSession | null {
    const known = this.sessions.get(id);
    if (known) return known.alive() ? known : null;
    const paths = vmPaths(this.dataDir, id);
    const state = readState(paths);
    if (!state || !isAlive(state)) return null;
    return this.track(id, paths, state);
  }

  private async guestOf(id: string): Promise<GuestClient> {
    this.requireDisk(id);
    const guest = await this.sessionFor(id)?.connect();
    if (!guest) throw new DriverError('NOT_RUNNING', `computer ${id} is not running`);
    return guest;
  }

  private recover(): void {
    for (const id of listDisks(this.dataDir)) void this.sessionFor(id)?.connect();
  }

  private checkAll(): void {
    for (const id of [...this.sessions.keys()]) this.checkExit(id);
  }

  /** Notices a VM that ended on its own, cleans up after it and tells the listeners. */
  private checkExit(id: string): void {
    const session = this.sessions.get(id);
    if (!session || session.stopping || session.alive()) return;
    // QEMU is ours and dead but not yet reaped: its 'exit' event (which calls this again) has the status.
    if (session.child && session.child.exitCode === null && session.child.signalCode === null) return;
    this.sessions.delete(id);
    session.close();
    const code = session.child?.exitCode;
    const signal = session.child?.signalCode;
    const reason =
      code === 0 ? 'the computer powered itself off' : `the VM's QEMU exited${code != null ? ` with code ${code}` : ''}${signal ? ` by ${signal}` : ''}`;
    void this.locks
      .run(id, async () => {
        killPasst(readState(session.paths));
        this.cleanupDead(id, session.paths);
      })
      .finally(() => {
        for (const listener of this.exitListeners) listener(id, reason);
      });
  }

  private requireDisk(id: string): { paths: VmPaths; meta: VmMeta } {
    const paths = vmPaths(this.dataDir, id);
    const meta = readMeta(paths);
    if (!meta) throw new DriverError('NOT_FOUND', `computer ${id} has no disk on this host`);
    return { paths, meta };
  }
}

/** Boot takes ~0.5 s on KVM and a few seconds under TCG on an idle core; allow for a loaded host. */
function bootTimeoutMs(runtime: Runtime): number {
  return runtime.accel.accel === 'kvm' ? 60_000 : 180_000;
}

/** Nameservers and search domains, as the VM's kernel command line may carry them (plain words only). */
function parseResolvConf(r: { text: string; dnsForward: boolean }): { dns: string[]; search: string[]; dnsForward: boolean } {
  const dns: string[] = [];
  const search: string[] = [];
  for (const line of r.text.split('\n')) {
    const ns = /^\s*nameserver\s+(\S+)/.exec(line)?.[1];
    if (ns && net.isIP(ns)) dns.push(ns);
    const s = /^\s*(?:search|domain)\s+(.+)$/.exec(line)?.[1];
    if (s) search.push(...s.trim().split(/\s+/).filter((d) => /^[A-Za-z0-9.-]{1,253}$/.test(d)));
  }
  return { dns: dns.slice(0, 3), search: search.slice(0, 6), dnsForward: r.dnsForward };
}

async function exits(state: VmState, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(state)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

async function quitQemu(paths: VmPaths): Promise<void> {
  try {
    const qmp = await Qmp.connect(paths.qmpSocket, 2000);
    await qmp.execute('quit').catch(() => undefined);
    qmp.close();
  } catch {
    // QEMU no longer answers: it will be killed
  }
}

function argAfter(argv: string[], flag: string): string {
  const i = argv.indexOf(flag);
  return i >= 0 ? (argv[i + 1] ?? '') : '';
}

function kill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
