/**
 * A host that offers several drivers (`--driver sandbox,vm`) serves each
 * computer with the driver its disk was made by: provision and import follow
 * the spec's `isolation` (the first driver when the server sends none), a
 * clone follows its source, and every other request goes to the driver that
 * has the computer's disk. A computer no driver has gets the first driver's
 * answer for a missing disk, so behaviour matches a single-driver host.
 */
import type { Duplex } from 'node:stream';
import type { ComputerEvent, FileStream, FsRequest, WatchProducers } from '../../schema/guest.ts';
import type { ActualState, ComputerSpec, ExecRunParams, ExecRunResult, ProcStartParams, StreamOffsets } from '../../schema/protocol.ts';
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
} from './driver.ts';

export class DriverRouter implements ComputerDriver {
  readonly name: string;
  readonly drivers: ComputerDriver[];
  /** Which driver holds each computer's disk, learned from list() and kept as disks come and go. */
  private readonly owners = new Map<string, ComputerDriver>();
  /** Log lines of computers no driver has yet (see logLine). */
  private readonly unowned = new Map<string, string[]>();

  constructor(drivers: ComputerDriver[]) {
    if (drivers.length === 0) throw new Error('a host needs at least one driver');
    this.drivers = drivers;
    this.name = drivers.map((d) => d.name).join(',');
  }

  /** The driver called `name`, or a clear refusal when this host does not offer it. */
  driver(name: string | undefined): ComputerDriver {
    if (name === undefined) return this.drivers[0];
    const d = this.drivers.find((x) => x.name === name);
    if (!d) throw new DriverError('BAD_REQUEST', `this host offers ${this.name}, not ${name}`);
    return d;
  }

  async describe(): Promise<DriverDescription> {
    const out: DriverDescription = { drivers: [] };
    for (const d of this.drivers) {
      const one = d.describe ? await d.describe() : { drivers: [d.name] };
      out.drivers.push(...one.drivers);
      if (one.vm_accel) out.vm_accel = one.vm_accel;
    }
    return out;
  }

  async prepare(onProgress: ProgressFn): Promise<void> {
    // One after the other: they share the template, which the first one builds.
    for (const d of this.drivers) await d.prepare(onProgress);
  }

  async provision(spec: ComputerSpec, cloneFrom: string | undefined, onProgress: ProgressFn, fromSnapshot?: string): Promise<void> {
    // A repeated provision finds the disk where the first one put it; a clone is made by its source's driver.
    const d = (await this.owner(spec.id)) ?? (cloneFrom ? await this.owner(cloneFrom) : null) ?? this.driver(spec.isolation);
    this.own(spec.id, d);
    await d.provision(spec, cloneFrom, onProgress, fromSnapshot);
  }

  async start(spec: ComputerSpec): Promise<void> {
    return (await this.ownerOrFirst(spec.id)).start(spec);
  }

  async stop(id: string): Promise<void> {
    return (await this.ownerOrFirst(id)).stop(id);
  }

  async suspend(id: string): Promise<void> {
    const d = await this.ownerOrFirst(id);
    if (!d.suspend) throw new DriverError('BAD_REQUEST', `a ${d.name} computer cannot keep its memory when stopped; only computers with isolation "vm" can`);
    return d.suspend(id);
  }

  async destroy(id: string): Promise<void> {
    await (await this.ownerOrFirst(id)).destroy(id);
    this.owners.delete(id);
    this.unowned.delete(id); // lines held for a computer that never got a driver
  }

  async resize(spec: ComputerSpec): Promise<void> {
    return (await this.ownerOrFirst(spec.id)).resize(spec);
  }

  async setEnv(id: string, env: Record<string, string>): Promise<void> {
    return (await this.ownerOrFirst(id)).setEnv(id, env);
  }

  async exec(id: string, params: ExecRunParams): Promise<ExecRunResult> {
    return (await this.ownerOrFirst(id)).exec(id, params);
  }

  async spawn(id: string, params: ProcStartParams, window: number): Promise<StreamProcess> {
    return (await this.ownerOrFirst(id)).spawn(id, params, window);
  }

  async fs(id: string, request: FsRequest): Promise<FsAnswer> {
    return (await this.ownerOrFirst(id)).fs(id, request);
  }

  async watch(id: string, watchId: string, producers: WatchProducers, onEvents: (events: ComputerEvent[]) => void): Promise<WatchHandle> {
    return (await this.ownerOrFirst(id)).watch(id, watchId, producers, onEvents);
  }

  async attach(id: string, procId: string, offsets: StreamOffsets, window: number): Promise<StreamProcess | null> {
    return (await this.ownerOrFirst(id)).attach(id, procId, offsets, window);
  }

  async connectTcp(id: string, port: number): Promise<Duplex> {
    return (await this.ownerOrFirst(id)).connectTcp(id, port);
  }

  async openFile(id: string, request: FileStream): Promise<Duplex> {
    const d = await this.ownerOrFirst(id);
    if (!d.openFile) throw new DriverError('BAD_REQUEST', `a ${d.name} computer cannot stream files`);
    return d.openFile(id, request);
  }

  systemLog(id: string): string | null {
    const known = this.owners.get(id);
    if (known) return known.systemLog?.(id) ?? null;
    for (const d of this.drivers) {
      const file = d.systemLog?.(id);
      if (file) return file;
    }
    return null;
  }

  logLine(id: string, line: string): void {
    const d = this.owners.get(id);
    if (d) return d.logLine?.(id, line);
    // A provision's first line comes before it picks its driver: held for whichever it is.
    const held = this.unowned.get(id) ?? [];
    if (held.length < 50) held.push(line);
    this.unowned.set(id, held);
  }

  /** Records which driver has a computer, and gives it the log lines that waited for that. */
  private own(id: string, d: ComputerDriver): void {
    this.owners.set(id, d);
    const held = this.unowned.get(id);
    this.unowned.delete(id);
    for (const line of held ?? []) d.logLine?.(id, line);
  }

  async snapshotDisk(id: string, name: string): Promise<{ bytes: number }> {
    const d = await this.ownerOrFirst(id);
    if (!d.snapshotDisk) throw unsupported(d, 'snapshots');
    return d.snapshotDisk(id, name);
  }

  async restoreDisk(id: string, name: string): Promise<void> {
    const d = await this.ownerOrFirst(id);
    if (!d.restoreDisk) throw unsupported(d, 'snapshots');
    return d.restoreDisk(id, name);
  }

  async deleteSnapshot(name: string): Promise<void> {
    for (const d of this.drivers) await d.deleteSnapshot?.(name);
  }

  async listSnapshots(): Promise<{ name: string; created_ms: number }[]> {
    const all: { name: string; created_ms: number }[] = [];
    for (const d of this.drivers) if (d.listSnapshots) all.push(...(await d.listSnapshots()));
    return all;
  }

  async metrics(id: string): Promise<ComputerMetrics | null> {
    return (await this.ownerOrFirst(id)).metrics(id);
  }

  async address(id: string): Promise<string | null> {
    const d = await this.owner(id);
    return d?.address ? d.address(id) : null;
  }

  async state(id: string): Promise<ActualState> {
    const d = await this.owner(id);
    return d ? d.state(id) : 'absent';
  }

  async list(): Promise<string[]> {
    const all: string[] = [];
    for (const d of this.drivers) {
      for (const id of await d.list()) {
        this.own(id, d);
        all.push(id);
      }
    }
    return all.sort();
  }

  async exportDisk(id: string): Promise<DiskExport> {
    return (await this.ownerOrFirst(id)).exportDisk(id);
  }

  async importDisk(spec: ComputerSpec, onProgress: ProgressFn): Promise<DiskImport> {
    const d = this.driver(spec.isolation);
    // A copy another driver holds here (a failed move back and forth) would shadow the new one.
    const other = await this.owner(spec.id);
    if (other && other !== d) await other.destroy(spec.id);
    const imp = await d.importDisk(spec, onProgress);
    return {
      write: (chunk) => imp.write(chunk),
      commit: async () => {
        await imp.commit();
        this.own(spec.id, d);
      },
      abort: () => imp.abort(),
    };
  }

  onExit(listener: (id: string, reason: string) => void): void {
    for (const d of this.drivers) d.onExit(listener);
  }

  async close(): Promise<void> {
    for (const d of this.drivers) await d.close();
  }

  /** The driver holding `id`'s disk, or null. */
  private async owner(id: string): Promise<ComputerDriver | null> {
    const known = this.owners.get(id);
    if (known && (await known.list()).includes(id)) return known;
    this.owners.delete(id);
    for (const d of this.drivers) {
      if ((await d.list()).includes(id)) {
        this.own(id, d);
        return d;
      }
    }
    return null;
  }

  private async ownerOrFirst(id: string): Promise<ComputerDriver> {
    return (await this.owner(id)) ?? this.drivers[0];
  }
}

function unsupported(d: ComputerDriver, what: string): DriverError {
  return new DriverError('BAD_REQUEST', `${what} are not available for ${d.name} computers on this host`);
}
