/**
 * What every VM of an agent is made with, settled once (prepare): the guest
 * kernel, the boot image and the accelerator the probe chose (the images of
 * a template are disk-images.ts's). Plus the few things derived from it that several modules need.
 */
import net from 'node:net';
import type { ProgressFn } from '../driver.ts';
import { computerResolvConf } from '../sandbox/host-config.ts';
import { chooseAccel, type AccelChoice } from './accel.ts';
import { ensureBootImage, staticBusybox } from './boot-image.ts';
import type { GuestKernel, KernelStore } from './kernel.ts';
import { checkVmHost } from './preflight.ts';
import { kernelImage, type BootFiles } from './qemu-args.ts';
import { pruneWarm } from './warm-image.ts';

export interface Runtime {
  kernel: GuestKernel;
  initrd: string;
  accel: AccelChoice;
}

export async function prepareRuntime(dataDir: string, kernels: KernelStore, onProgress: ProgressFn): Promise<Runtime> {
  checkVmHost(dataDir);
  const kernel = await kernels.ensure(onProgress);
  const initrd = await ensureBootImage(dataDir, kernel);
  onProgress({ phase: 'vm', message: 'probing for hardware virtualization (booting a test VM)' });
  const accel = await chooseAccel(kernel, dataDir, staticBusybox().data);
  pruneWarm(dataDir);
  return { kernel, initrd, accel };
}

export const bootFiles = (runtime: Runtime): BootFiles => ({ kernel: kernelImage(runtime.kernel, runtime.accel.accel), initrd: runtime.initrd });

/** Boot takes ~0.5 s on KVM and a few seconds under TCG on an idle core; allow for a loaded host. */
export const bootTimeoutMs = (runtime: Runtime): number => (runtime.accel.accel === 'kvm' ? 60_000 : 180_000);

/** The host's DNS for a VM: nameservers and search domains as its kernel command line may carry them (plain words only). */
export function vmResolv(): { dns: string[]; search: string[]; dnsForward: boolean } {
  const r = computerResolvConf();
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
