/**
 * Starting new computers from warm images (warm-image.ts has the layout and
 * why): finding the image of a computer's shape, starting a computer from it,
 * and making the image of a shape in the background after the first computer
 * of that shape booted.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { DriverError } from '../driver.ts';
import type { ComputerSpec } from '../../../schema/protocol.ts';
import { hostnameFromName } from '../sandbox/paths.ts';
import { BuildOnce, buildPath, publish, removeAbandonedBuilds } from './build-dir.ts';
import { makeEmptyDisk } from './disk.ts';
import type { Machines } from './machines.ts';
import { saveMemory } from './memory-image.ts';
import { imagesDir, vmPaths, vmPathsIn } from './paths.ts';
import { cpuModel, kernelArgs } from './qemu-args.ts';
import { guestIpv6Args } from './network.ts';
import type { TemplateImages } from './disk-images.ts';
import { bootFiles, bootTimeoutMs, vmResolv, type Runtime } from './runtime.ts';
import { VmSession } from './session.ts';
import { exits, kill, quitOrKill } from './power.ts';
import { isAlive, killNetwork, killRecordedNow, launchVm, readState, tail, type VmState } from './qemu.ts';
import { findWarm, machineFor, noteRanIn, touchWarm, warmDir, warmKey, type WarmImage, type WarmShape } from './warm-image.ts';

export class WarmStarts {
  private readonly dataDir: string;
  private readonly machines: Machines;
  private readonly builds = new BuildOnce<void>();

  /** Warm machines being built now, by build directory: ended when the driver closes. */
  private readonly building = new Set<string>();

  constructor(dataDir: string, machines: Machines) {
    this.dataDir = dataDir;
    this.machines = machines;
    // A warm machine runs detached like a computer's VM, but nothing else would ever end the
    // one of an agent that stopped or died mid-build.
    removeAbandonedBuilds(imagesDir(dataDir), endVmIn);
  }

  /** Ends the warm machines being built (the agent stops; they are built again when next needed). */
  close(): void {
    for (const dir of this.building) endVmIn(dir);
  }

  /** Where the warm image of this shape, with this runtime and template image, is (made or not). */
  dir(runtime: Runtime, images: TemplateImages, shape: WarmShape): string {
    const accel = runtime.accel.accel;
    const files = [bootFiles(runtime).kernel, runtime.initrd, images.guest, images.base, accel, cpuModel(accel)];
    // The address passt hands out is set up at boot: a warm machine is the host's as it was then.
    return warmDir(this.dataDir, warmKey(files, shape, [...kernelArgs(accel), ...guestIpv6Args()]));
  }

  /** The warm image of the shape, marked as used; or null, and it will be made. */
  take(runtime: Runtime, images: TemplateImages, shape: WarmShape): WarmImage | null {
    const dir = this.dir(runtime, images, shape);
    const warm = findWarm(dir);
    if (warm) touchWarm(warm);
    else this.makeLater(runtime, images, shape, dir);
    return warm;
  }

  /**
   * Starts a new computer, whose disk is already a copy of the warm disk, by loading the warm
   * machine's memory around it; the guest then takes the computer's own identity. Null when
   * that fails: the computer then boots from the same disk.
   */
  async start(spec: ComputerSpec, warm: WarmImage, dnsForward: boolean): Promise<VmSession | null> {
    const paths = vmPaths(this.dataDir, spec.id);
    try {
      const { session, guest } = await this.machines.resume(spec.id, paths, machineFor(warm, paths), warm.memory, dnsForward, () => undefined);
      await guest.request(
        { op: 'machine', hostname: hostnameFromName(spec.name), entropy: randomBytes(64).toString('base64'), time_ms: Date.now() },
        { timeoutMs: 30_000 },
      );
      await guest.setEnv(spec.env);
      return session;
    } catch (err) {
      await this.machines.abandon(spec.id, paths);
      fs.appendFileSync(paths.log, `--- the warm image could not be used (${(err as Error).message}); booting\n`);
      return null;
    }
  }

  /** Makes the warm image in the background (once); creates use it as soon as it is there. */
  private makeLater(runtime: Runtime, images: TemplateImages, shape: WarmShape, final: string): void {
    void this.builds
      .run(final, () => this.make(runtime, images, shape, final))
      .catch((err: Error) => console.error(`vm driver: warming up a ${shape.vcpus} vCPU / ${shape.memoryMb} MiB machine failed: ${err.message}`));
  }

  /** Boots a machine of the shape on an empty disk, waits until it is ready, saves it, and puts it away. */
  private async make(runtime: Runtime, images: TemplateImages, shape: WarmShape, final: string): Promise<void> {
    if (fs.existsSync(final)) return;
    const tmp = buildPath(final);
    fs.mkdirSync(tmp, { recursive: true, mode: 0o700 });
    const paths = vmPathsIn(tmp);
    let state: VmState | null = null;
    this.building.add(tmp);
    try {
      await makeEmptyDisk(paths.disk, shape.diskMb, tmp);
      const accel = runtime.accel.accel;
      ({ state } = await launchVm({
        id: 'warm', paths, accel, boot: bootFiles(runtime), baseImage: images.base, guestImage: images.guest,
        vcpus: shape.vcpus, memoryMb: shape.memoryMb, hostname: 'computer', ...vmResolv(),
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
      await quitOrKill(paths, state);
      await killNetwork(state);
      for (const f of [paths.guestSocket, paths.controlSocket, paths.qmpSocket, paths.state, paths.qemuLog, paths.passtLog, paths.pastaLog]) fs.rmSync(f, { force: true });
      noteRanIn(tmp);
      publish(tmp, final);
    } catch (err) {
      if (state && isAlive(state)) kill(state.pid);
      if (state) await exits(state, 10_000);
      await killNetwork(state);
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    } finally {
      this.building.delete(tmp);
    }
  }
}

/** Ends the VM recorded in a build directory, if it still runs. */
function endVmIn(dir: string): void {
  const state = readState(vmPathsIn(dir));
  if (state) killRecordedNow(state);
}
