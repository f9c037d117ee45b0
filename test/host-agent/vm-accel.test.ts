/**
 * How VMs run is decided by booting a probe guest, not by the presence of
 * /dev/kvm: the verdict must match what really boots on this host, and the
 * kernel QEMU boots is the ELF inside Debian's bzImage.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { chooseAccel } from '../../host-agent/drivers/vm/accel.ts';
import { staticBusybox } from '../../host-agent/drivers/vm/boot-image.ts';
import { KernelStore, extractVmlinux } from '../../host-agent/drivers/vm/kernel.ts';
import { kernelArgs, kernelImage, machineArgs } from '../../host-agent/drivers/vm/qemu-args.ts';
import { QEMU_BINARY } from '../../host-agent/drivers/vm/qemu.ts';
import { imagesDir } from '../../host-agent/drivers/vm/paths.ts';
import { useSharedTemplates } from '../shared-template.ts';
import { DATA_DIR } from './vm-fixture.ts';

describe('accelerator probe', () => {
  it('picks what really boots here, and the other choice really does not (when it was tried)', async () => {
    useSharedTemplates(DATA_DIR);
    const kernel = await new KernelStore(DATA_DIR).ensure(() => undefined);
    const choice = await chooseAccel(kernel, DATA_DIR, staticBusybox().data);
    expect(['kvm', 'tcg']).toContain(choice.accel);
    expect(choice.probe_ms).toBeGreaterThan(0);
    const probe = fs.readdirSync(imagesDir(DATA_DIR)).find((f) => f.startsWith('probe-'))!;
    const boot = (accel: 'kvm' | 'tcg', timeoutMs: number) =>
      spawnSync(QEMU_BINARY, [...machineArgs(accel, { kernel: kernelImage(kernel, accel), initrd: path.join(imagesDir(DATA_DIR), probe) }, kernelArgs(accel), 1, 256), '-serial', 'stdio'], {
        encoding: 'utf8',
        timeout: timeoutMs,
      });
    // The chosen accelerator boots the probe to its marker.
    expect(boot(choice.accel, 120_000).stdout).toContain('HANGAR-PROBE-OK');
    if (choice.accel === 'tcg' && fs.existsSync('/dev/kvm')) {
      // /dev/kvm is there, yet the probe said no: KVM must indeed fail to boot it.
      expect(choice.reason).toMatch(/KVM could not boot the probe guest|no usable \/dev\/kvm/);
      expect(boot('kvm', 15_000).stdout ?? '').not.toContain('HANGAR-PROBE-OK');
    }
  }, 300_000);

  it("extracts the kernel's ELF image from Debian's bzImage, and refuses what is not a kernel", async () => {
    useSharedTemplates(DATA_DIR);
    const kernel = await new KernelStore(DATA_DIR).ensure(() => undefined);
    const elf = fs.readFileSync(kernel.vmlinux);
    expect(elf.readUInt32BE(0)).toBe(0x7f454c46);
    // PVH boot needs the Xen ELF note naming the entry point; it is in the decompressed image.
    expect(elf.includes(Buffer.from('Xen\0'))).toBe(true);
    await expect(extractVmlinux(Buffer.alloc(4096))).rejects.toThrow(/not a bzImage/);
  });
});
