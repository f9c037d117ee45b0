/**
 * The sandbox driver: computers as namespaced, cgroup-limited process trees on
 * an overlay root, each in a user namespace of its own and run by the guest
 * agent as its pid 1 (see sandbox/launcher/ for the isolation and
 * docs/security.md for what it stops).
 * Sandboxes are detached: they outlive the host agent, and a new driver on the
 * same data dir finds them by their state files and reconnects to their guests.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ActualState, ComputerSpec, ExecRunParams, ExecRunResult, ProcStartParams, StreamOffsets } from '../../schema/protocol.ts';
import type { Duplex } from 'node:stream';
import { ComputerLocks, guestFailure, GuestOps } from './guest-ops.ts';
import { DriverError, type ComputerDriver, type ComputerMetrics, type DiskExport, type DiskImport, type FsAnswer, type ProgressFn, type StreamProcess, type WatchHandle } from './driver.ts';
import { type ComputerEvent, type FileStream, type FsRequest, type WatchProducers } from '../../schema/guest.ts';
import { ensureGuestRuntime, type GuestRuntime } from '../guest/runtime.ts';
import { diskGbOf } from './disk-quota.ts';
import { ArchiveWriter, readArchive } from './sandbox/disk-archive.ts';
import { copyDiskImage, liveDiskPath, thaw } from './sandbox/disk-copy.ts';
import { convertLegacyDisk, convertUpperDir, hasLegacyDisk } from './sandbox/legacy-disk.ts';
import { DiskStorage } from './sandbox/storage.ts';
import { listSnapshotFiles, readSnapshotMeta, removeSnapshotFiles, takeSnapshot } from './snapshot-files.ts';
import { installApps } from './sandbox/apps.ts';
import { ComputerCgroup, detectCgroups, type CgroupLayout, type Limits } from './sandbox/cgroups.ts';
import { createDisk, destroyDisk, listDisks, readMeta, removeAbandonedDisks, writeMeta, type ComputerMeta } from './sandbox/disk.ts';
import { computerResolvConf } from './sandbox/host-config.ts';
import { namespaceAddress } from './sandbox/address.ts';
import { OomNotes, appendConsole, dropEarlyConsole } from './sandbox/console-log.ts';
import { CpuMeter } from './sandbox/metrics.ts';
import { clearState, isAlive, launchSandbox, logTail, readState } from './sandbox/launch.ts';
import { assertSafeId, computerPaths, hostnameFromName, snapshotsDir, type ComputerPaths } from './sandbox/paths.ts';
import { checkHost } from './sandbox/preflight.ts';
import { Session } from './sandbox/session.ts';
import { TemplateStore, TEMPLATE_NAME } from './sandbox/template.ts';

export interface SandboxDriverOptions {
  dataDir: string;
  /** Host directories bind-mounted read-only at the same path in every computer (e.g. a local package mirror). */
  shareReadOnly?: string[];
  /** Size of the disk pool when the data dir cannot reflink (storage.ts); default: its free space. */
  diskPoolGb?: number;
}

/** A fork-bomb guard, far above what interactive work needs. */
const PIDS_MAX = 4096;
const BOOT_TIMEOUT_MS = 20_000;
const POLL_MS = 2000;
const GiB = 1024 ** 3;

export class SandboxDriver implements ComputerDriver {
  /** What goes through a running computer's guest (exec, streams, files, watches, relayed connections). */
  private readonly guests = new GuestOps({
    requireDisk: (id) => this.requireDisk(id),
    running: (id) => this.sessionFor(id) !== null,
    connect: (id) => this.sessionFor(id)?.connect(),
  });
  readonly name = 'sandbox';
  private readonly dataDir: string;
  private readonly shares: string[];
  private readonly templates: TemplateStore;
  private readonly storage: DiskStorage;
  private layout: CgroupLayout | null = null;
  private readonly sessions = new Map<string, Session>();
  private readonly locks = new ComputerLocks();
  private readonly exitListeners: Array<(id: string, reason: string) => void> = [];
  private readonly cpu = new CpuMeter();
  private readonly oom = new OomNotes();
  private readonly poll: NodeJS.Timeout;

  constructor(opts: SandboxDriverOptions) {
    fs.mkdirSync(opts.dataDir, { recursive: true });
    // Canonical, so the launcher's symlink checks compare like with like.
    this.dataDir = fs.realpathSync(opts.dataDir);
    this.shares = (opts.shareReadOnly ?? []).map((dir) => path.resolve(dir));
    this.templates = new TemplateStore(this.dataDir);
    this.storage = new DiskStorage(this.dataDir, { poolGb: opts.diskPoolGb });
    removeAbandonedDisks(this.dataDir);
    this.recover();
    this.poll = setInterval(() => this.checkAll(), POLL_MS);
    this.poll.unref();
  }

  async prepare(onProgress: ProgressFn): Promise<void> {
    this.checkHost();
    await this.storage.ensure();
    const templateDir = await this.templates.ensure(TEMPLATE_NAME, onProgress);
    await ensureGuestRuntime(templateDir, onProgress);
  }

  provision(spec: ComputerSpec, cloneFrom: string | undefined, onProgress: ProgressFn, fromSnapshot?: string): Promise<void> {
    return this.withLock(spec.id, async () => {
      this.checkHost();
      const paths = computerPaths(this.dataDir, spec.id);
      let meta = readMeta(paths);
      if (!meta) {
        let templateDir: string;
        let apps: string[] = [];
        let copyInto: ((image: string) => Promise<void>) | undefined;
        let diskGb = diskGbOf(spec);
        if (fromSnapshot) {
          assertSafeId(fromSnapshot);
          const image = this.storage.snapshotPath(fromSnapshot);
          if (!fs.existsSync(image)) throw new DriverError('NOT_FOUND', `snapshot ${fromSnapshot} is not on this host`);
          // A snapshot of an older agent says nothing of its template: the spec's, as it is now.
          const snap = readSnapshotMeta(snapshotsDir(this.dataDir), fromSnapshot);
          templateDir = snap?.template_dir && fs.existsSync(snap.template_dir) ? snap.template_dir : await this.templates.ensure(spec.template, onProgress);
          apps = snap?.apps_installed ?? [];
          // The copy has the snapshot's disk (at least); it grows to the spec's size at its first boot.
          diskGb = Math.max(snap?.disk_gb ?? 0, Math.ceil(fs.statSync(image).size / GiB));
          onProgress({ phase: 'disk', message: `copying snapshot ${fromSnapshot}` });
          copyInto = (target) => this.storage.copy(image, target);
        } else if (cloneFrom) {
          const source = computerPaths(this.dataDir, cloneFrom);
          const sourceMeta = readMeta(source);
          if (!sourceMeta) throw new DriverError('NOT_FOUND', `computer ${cloneFrom} to clone has no disk on this host`);
          templateDir = sourceMeta.template_dir;
          apps = sourceMeta.apps_installed;
          // The copy has the source's disk (at least); it grows to the spec's size at its first boot.
          diskGb = sourceMeta.disk_gb ?? diskGb;
          onProgress({ phase: 'disk', message: `copying the disk of ${cloneFrom}` });
          copyInto = (image) => this.copyDisk(cloneFrom, source, image, diskGb);
        } else {
          templateDir = await this.templates.ensure(spec.template, onProgress);
          onProgress({ phase: 'disk', message: 'creating the disk' });
        }
        meta = {
          id: spec.id, name: spec.name, hostname: hostnameFromName(spec.name), template_dir: templateDir,
          vcpus: spec.vcpus, memory_mb: spec.memory_mb, disk_gb: diskGb, apps_installed: apps, created_at: new Date().toISOString(),
        };
        await createDisk(this.storage, { ...meta, disk_gb: diskGb }, copyInto);
      }
      onProgress({ phase: 'boot', message: 'starting' });
      const session = await this.startLocked(spec, onProgress);
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
    return this.withLock(spec.id, async () => {
      await this.startLocked(spec);
    });
  }

  stop(id: string): Promise<void> {
    return this.withLock(id, async () => {
      this.requireDisk(id);
      await this.stopLocked(id);
    });
  }

  destroy(id: string): Promise<void> {
    return this.withLock(id, async () => {
      const paths = computerPaths(this.dataDir, id);
      await this.stopLocked(id);
      destroyDisk(paths);
      dropEarlyConsole(paths);
      this.cpu.forget(id);
    });
  }

  resize(spec: ComputerSpec): Promise<void> {
    return this.withLock(spec.id, async () => {
      const { paths, meta } = this.requireDisk(spec.id);
      writeMeta(paths, { ...meta, vcpus: spec.vcpus, memory_mb: spec.memory_mb });
      const cgroup = this.cgroup(spec.id);
      if (this.sessionFor(spec.id) && cgroup.exists()) cgroup.apply(limitsOf(spec));
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


  async metrics(id: string): Promise<ComputerMetrics | null> {
    const session = this.sessionFor(id);
    if (!session || !session.cgroup.exists()) return null;
    const metrics = await this.cpu.measure(id, session.cgroup, readMeta(session.paths)?.vcpus ?? 1);
    return { ...metrics, ...diskUse(liveDiskPath(session.state)) };
  }

  async state(id: string): Promise<ActualState> {
    const paths = computerPaths(this.dataDir, id);
    if (!readMeta(paths)) return 'absent';
    const session = this.sessionFor(id);
    if (!session) return 'stopped';
    const guest = await session.connect();
    if (!guest) return 'stopped';
    try {
      await guest.ping();
      return 'running';
    } catch {
      return 'stopped';
    }
  }

  async address(id: string): Promise<string | null> {
    const state = readState(computerPaths(this.dataDir, id));
    // The namespaces belong to the launcher's child (ns_pid); sandboxes of the old launcher had them on pid.
    return state && isAlive(state) ? namespaceAddress(state.ns_pid ?? state.pid) : null;
  }

  systemLog(id: string): string | null {
    const paths = computerPaths(this.dataDir, id);
    return fs.existsSync(paths.dir) ? paths.log : null;
  }

  logLine(id: string, line: string): void {
    appendConsole(computerPaths(this.dataDir, id), line);
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
    return this.withLock(spec.id, async () => {
      this.checkHost();
      // The disk needs the root it was made on; on a host that never built it, this builds the current recipe.
      await this.templates.ensure(spec.template, onProgress);
      const paths = computerPaths(this.dataDir, spec.id);
      if (readMeta(paths)) {
        if (this.sessionFor(spec.id)) throw new DriverError('FAILED', `computer ${spec.id} is running on this host`);
        // A copy left by a move that failed while this agent was away: the server says the computer lives elsewhere.
        destroyDisk(paths);
      }
      await this.storage.ensure();
      const writer = new ArchiveWriter(this.dataDir, spec.id);
      return {
        write: (chunk) => writer.write(chunk),
        commit: () => this.withLock(spec.id, () => writer.commit()),
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

  /**
   * A point-in-time copy of computer `id`'s disk under `name` (running or not: a running
   * computer's file system is frozen for the few milliseconds of a reflink copy).
   */
  snapshotDisk(id: string, name: string): Promise<{ bytes: number }> {
    assertSafeId(name);
    return this.withLock(id, async () => {
      const { paths, meta } = this.requireDisk(id);
      const state = this.sessionFor(id)?.state ?? null;
      return takeSnapshot(snapshotsDir(this.dataDir), name, (image) => copyDiskImage(this.storage, paths.image, image, state), {
        computer_id: id, template_dir: meta.template_dir, apps_installed: meta.apps_installed, disk_gb: meta.disk_gb,
      });
    });
  }

  /** Replaces stopped computer `id`'s disk with snapshot `name` (which stays). */
  restoreDisk(id: string, name: string): Promise<void> {
    assertSafeId(name);
    return this.withLock(id, async () => {
      const { paths } = this.requireDisk(id);
      if (this.sessionFor(id)) throw new DriverError('BAD_REQUEST', `computer ${id} is running; stop it to restore a snapshot`);
      const source = this.storage.snapshotPath(name);
      if (!fs.existsSync(source)) throw new DriverError('NOT_FOUND', `no snapshot ${name}`);
      await this.storage.copy(source, paths.image);
      // The disk now sits on the snapshot's template and has its apps; its size is the larger of
      // the two (it grows to the computer's disk_gb at the next start, and never shrinks).
      const snap = readSnapshotMeta(snapshotsDir(this.dataDir), name);
      const meta = readMeta(paths);
      if (meta && snap) {
        writeMeta(paths, {
          ...meta,
          template_dir: fs.existsSync(snap.template_dir) ? snap.template_dir : meta.template_dir,
          apps_installed: snap.apps_installed,
          disk_gb: Math.max(meta.disk_gb ?? 0, snap.disk_gb ?? 0) || meta.disk_gb,
        });
      }
    });
  }

  async listSnapshots(): Promise<{ name: string; created_ms: number }[]> {
    return listSnapshotFiles(snapshotsDir(this.dataDir));
  }

  /** Removes snapshot `name`; gone already is fine. */
  async deleteSnapshot(name: string): Promise<void> {
    assertSafeId(name);
    removeSnapshotFiles(snapshotsDir(this.dataDir), name);
  }

  /** Unmounts the disk pool of this data dir if no computer uses it (before deleting a data dir). */
  releaseStorage(): Promise<void> {
    return this.storage.release();
  }

  /** The cgroup limits the kernel applies to a computer now (for operators and tests). */
  limits(id: string): ReturnType<ComputerCgroup['readLimits']> | null {
    const cgroup = this.cgroup(id);
    return cgroup.exists() ? cgroup.readLimits() : null;
  }

  // ------------------------------------------------------------------ internals

  private async startLocked(spec: ComputerSpec, onProgress: ProgressFn = () => undefined): Promise<Session> {
    const { paths, meta } = this.requireDisk(spec.id);
    const existing = this.sessionFor(spec.id);
    if (existing) {
      if (await existing.connect()) return existing; // running: start is a no-op
      await this.stopLocked(spec.id); // alive but its guest is gone: reboot it
    }
    await this.storage.ensure();
    const runtime = await ensureGuestRuntime(meta.template_dir, onProgress);
    const diskGb = Math.max(diskGbOf(spec), meta.disk_gb ?? 0);
    if (hasLegacyDisk(paths)) await convertLegacyDisk(this.storage, runtime, paths, diskGb, onProgress);
    await this.storage.grow(paths.image, diskGb);
    const updated: ComputerMeta = {
      ...meta, name: spec.name, hostname: hostnameFromName(spec.name), vcpus: spec.vcpus, memory_mb: spec.memory_mb, disk_gb: diskGb,
    };
    writeMeta(paths, updated);
    const cgroup = this.cgroup(spec.id);
    if (cgroup.exists()) {
      await cgroup.killAll(); // leftovers of a computer that died unwatched
      await cgroup.remove();
    }
    cgroup.create(limitsOf(spec));
    const resolv = computerResolvConf();
    const { state, child } = await launchSandbox({
      paths, templateDir: updated.template_dir, runtime, dataDir: this.dataDir, hostname: updated.hostname, shares: this.shares, cgroup,
      resolvConf: resolv.text, dnsForward: resolv.dnsForward,
    }).catch(async (err: unknown) => {
      await this.cleanupDead(spec.id, cgroup, paths);
      throw err;
    });
    const session = this.track(spec.id, paths, cgroup, state);
    session.child = child;
    child.once('exit', () => this.checkExit(spec.id));
    const guest = await session.waitForGuest(BOOT_TIMEOUT_MS);
    if (!guest) {
      await this.stopLocked(spec.id);
      throw new DriverError('FAILED', `the computer did not come up: ${logTail(paths.log)}`);
    }
    try {
      await guest.setEnv(spec.env);
    } catch (err) {
      // A computer that did not get its environment is not started: leave nothing running.
      await this.stopLocked(spec.id);
      throw guestFailure(spec.id, err, () => !this.sessionFor(spec.id));
    }
    return session;
  }

  private async stopLocked(id: string): Promise<void> {
    const paths = computerPaths(this.dataDir, id);
    const session = this.sessions.get(id);
    if (session) session.stopping = true;
    const state = readState(paths);
    const cgroup = this.cgroup(id);
    if (state && isAlive(state)) {
      // The launcher first: with --kill-child its death takes the computer's pid 1 along.
      for (const pid of [state.pid, state.pasta_pid]) {
        try {
          if (pid) process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (cgroup.exists()) await cgroup.killAll();
    const deadline = Date.now() + 10_000;
    while (state && isAlive(state)) {
      if (Date.now() > deadline) throw new DriverError('FAILED', `computer ${id} did not stop`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await this.cleanupDead(id, cgroup, paths);
  }

  private async cleanupDead(id: string, cgroup: ComputerCgroup, paths: ComputerPaths): Promise<void> {
    this.sessions.get(id)?.close();
    this.sessions.delete(id);
    if (cgroup.exists()) {
      await cgroup.killAll(); // e.g. pasta
      await cgroup.remove();
    }
    clearState(paths);
  }

  private track(id: string, paths: ComputerPaths, cgroup: ComputerCgroup, state: NonNullable<ReturnType<typeof readState>>): Session {
    this.sessions.get(id)?.close();
    const session = new Session(id, paths, cgroup, state, () => this.checkExit(id));
    this.sessions.set(id, session);
    return session;
  }

  /** The session of a computer whose sandbox is alive, picking up ones an earlier agent started. */
  private sessionFor(id: string): Session | null {
    const known = this.sessions.get(id);
    if (known) return known.alive() ? known : null;
    const paths = computerPaths(this.dataDir, id);
    const state = readState(paths);
    if (!state || !isAlive(state)) return null;
    return this.track(id, paths, this.cgroup(id), state);
  }


  /** Finds computers left running by an earlier agent and watches them (thawing a disk it left frozen mid-copy). */
  private recover(): void {
    for (const id of listDisks(this.dataDir)) {
      const session = this.sessionFor(id);
      const live = liveDiskPath(session?.state ?? null);
      if (live) void thaw(live);
      void session?.connect();
    }
  }

  /** Copies computer `id`'s disk (running or not) into `image`; a disk of the old layout is converted on the way. */
  private copyDisk(id: string, source: ComputerPaths, image: string, diskGb: number): Promise<void> {
    return this.withLock(id, async () => {
      if (hasLegacyDisk(source) && !fs.existsSync(source.image)) {
        const runtime = await ensureGuestRuntime(readMeta(source)!.template_dir, () => undefined);
        return convertUpperDir(this.storage, runtime, source.upper, image, diskGb);
      }
      const session = this.sessionFor(id);
      return copyDiskImage(this.storage, source.image, image, session ? session.state : null);
    });
  }

  private checkAll(): void {
    for (const id of [...this.sessions.keys()]) this.checkExit(id);
    for (const [id, s] of this.sessions) {
      if (s.cgroup.exists()) this.oom.check(id, s.paths, s.cgroup.sample().oomKills, s.oomBaseline, readMeta(s.paths)?.memory_mb ?? 0);
    }
  }

  /** Notices a computer that died on its own, cleans up after it and tells the listeners. */
  private checkExit(id: string): void {
    const session = this.sessions.get(id);
    if (!session || session.stopping || session.alive()) return;
    this.sessions.delete(id);
    session.close();
    const oom = session.cgroup.exists() && session.cgroup.sample().oomKills > session.oomBaseline;
    const code = session.child?.exitCode;
    const signal = session.child?.signalCode;
    const reason = oom
      ? 'the computer ran out of memory and its init was killed'
      : `the computer's init exited${code != null ? ` with code ${code}` : ''}${signal ? ` by ${signal}` : ''}`;
    appendConsole(session.paths, `the computer stopped on its own: ${reason}`);
    this.oom.forget(id);
    this.withLock(id, () => this.cleanupDead(id, session.cgroup, session.paths))
      .catch((err: unknown) => console.error(`cleaning up after computer ${id} failed: ${(err as Error).message}`))
      .finally(() => {
        for (const listener of this.exitListeners) listener(id, reason);
      });
  }

  /** Host requirements and the shared directories, as one clear sentence when something is wrong. */
  private checkHost(): void {
    checkHost(this.dataDir);
    for (const dir of this.shares) {
      if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory() || /\n/.test(dir)) {
        throw new DriverError('BAD_REQUEST', `shared directory ${JSON.stringify(dir)} does not exist: create it or drop it from --share-ro.`);
      }
    }
  }

  private requireDisk(id: string): { paths: ComputerPaths; meta: ComputerMeta } {
    const paths = computerPaths(this.dataDir, id);
    const meta = readMeta(paths);
    if (!meta) throw new DriverError('NOT_FOUND', `computer ${id} has no disk on this host`);
    return { paths, meta };
  }

  private cgroup(id: string): ComputerCgroup {
    this.layout ??= detectCgroups();
    return new ComputerCgroup(this.layout, id);
  }

  /** Serializes lifecycle operations per computer; exec and metrics do not wait. */
  private withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, fn);
  }

}

function limitsOf(spec: ComputerSpec): Limits {
  return { vcpus: spec.vcpus, memoryMb: spec.memory_mb, pids: PIDS_MAX };
}

/** Used and total bytes of a running computer's disk, from its file system (statfs through the launcher's fd). */
function diskUse(live: string | null): Pick<ComputerMetrics, 'disk_bytes' | 'disk_percent'> | Record<string, never> {
  if (!live) return {};
  try {
    const st = fs.statfsSync(live);
    const total = st.blocks * st.bsize;
    const used = (st.blocks - st.bfree) * st.bsize;
    return { disk_bytes: used, disk_percent: total > 0 ? Math.round((used / total) * 1000) / 10 : 0 };
  } catch {
    return {};
  }
}
