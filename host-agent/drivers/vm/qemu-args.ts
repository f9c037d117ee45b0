/**
 * QEMU's command line for a computer (and for the accelerator probe).
 *
 * Machine: `microvm`, QEMU's minimal x86 machine — no PCI, no firmware
 * tables to parse, virtio devices on MMIO — booting the kernel's ELF directly
 * (PVH). Everything a computer needs is a virtio device, so nothing here
 * needed q35.
 *
 * Under software emulation the guest cannot calibrate its TSC against the
 * emulated timers when the host is busy (it then hangs in early boot), so it
 * is told the frequency, which is the host's own under TCG; and speculative
 * execution mitigations are off, since an emulated CPU does not speculate.
 *
 * Two more choices under TCG buy back what emulation costs most:
 * - Address-space randomisation is off in the guest (`norandmaps`). QEMU 7.2
 *   finds code it already translated by virtual address, so with libraries
 *   mapped somewhere new at every program start each start translated ld.so,
 *   libc and the program again: a fork+exec of /bin/true took 33 ms, `bash -c
 *   true` 85 ms; without randomisation 10 and 20 ms (measured in a guest, 50
 *   and 20 starts). The VM is the isolation boundary; randomisation inside
 *   only hardens the tenant's programs against each other, and root inside
 *   can turn it back on (`sysctl kernel.randomize_va_space=2`). KVM guests
 *   keep it.
 * - The CPU does not offer ERMS/FSRM: with them the kernel and glibc copy
 *   with `rep movsb`, which TCG runs one byte per step; without, `rep movsq`
 *   and vector loops (a 200 MB pipe through `cat`: 4.3-7.3 s with, 2.0 s without).
 */
import fs from 'node:fs';
import type { Accel } from './accel.ts';
import type { GuestKernel } from './kernel.ts';

const TCG_CODE_MIB = 64;

export interface BootFiles {
  kernel: string;
  initrd: string;
}

/**
 * The kernel image QEMU loads. Under TCG the ELF, booted directly: the guest
 * would take a second or more to decompress a bzImage under emulation. Under
 * KVM the bzImage, decompressed in a few milliseconds by the guest: QEMU keeps
 * the image it loaded for the VM's whole life, 8 MiB instead of 45.
 */
export function kernelImage(kernel: GuestKernel, accel: Accel): string {
  return accel === 'kvm' ? kernel.bzImage : kernel.vmlinux;
}

/** Kernel command line words shared by every VM on this accelerator. */
export function kernelArgs(accel: Accel): string[] {
  // cryptomgr.notests: the kernel's crypto self-tests are most of its boot time under TCG.
  const args = ['console=ttyS0', 'panic=-1', 'quiet', 'loglevel=3', 'cryptomgr.notests'];
  if (accel === 'tcg') {
    const khz = hostTscKhz();
    if (khz) args.push(`tsc_early_khz=${khz}`, 'tsc=reliable');
    args.push('mitigations=off', 'norandmaps');
  }
  return args;
}

/** The CPU model of a VM: KVM, the host's CPU as is. TCG: every feature QEMU can emulate, so software
 * built for newer x86-64 levels (SSE4.2, POPCNT: many wheels need them) runs, less the fast-string ones
 * (see above). A warm image's memory fits only a machine with the same model. */
export function cpuModel(accel: Accel): string {
  return accel === 'kvm' ? 'host' : 'max,erms=off,fsrm=off';
}

/** machine, accelerator, CPU model, kernel: the part every VM and the probe share. */
export function machineArgs(accel: Accel, boot: BootFiles, append: string[], vcpus: number, memoryMb: number): string[] {
  return [
    '-M', 'microvm',
    // TCG keeps translated code in a buffer that grows to 1 GiB by default, per VM: 64 MiB holds
    // what a computer runs day to day (measured: no slower than the default) and bounds the cost.
    '-accel', accel === 'tcg' ? `tcg,tb-size=${TCG_CODE_MIB}` : 'kvm',
    '-cpu', cpuModel(accel),
    '-smp', String(vcpus),
    '-m', `${memoryMb}M`,
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-kernel', boot.kernel, '-initrd', boot.initrd, '-append', append.join(' '),
    // The guest's power-off (and any reset) ends the QEMU process.
    '-no-reboot',
  ];
}

/** The host's TSC frequency in kHz (what a TCG guest's TSC runs at), when /proc/cpuinfo says. */
function hostTscKhz(): number | null {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'utf8');
    if (!/^flags\s*:.*\bconstant_tsc\b/m.test(info)) return null;
    const mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(info)?.[1]);
    return Number.isFinite(mhz) && mhz > 100 ? Math.round(mhz * 1000) : null;
  } catch {
    return null;
  }
}
